//! The cluster's PKI, made with the `openssl` command: a CA, the API server's serving certificate
//! (SAN IP:127.0.0.1) and the service-account signing key pair.

use crate::error::{HarnessError, IoContext, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Debug)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
}

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = greenbatch-test
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

impl Pki {
    /// Writes a fresh PKI into `dir` (valid for two days).
    pub fn generate(dir: &Path) -> Result<Self> {
        let cnf = dir.join("openssl.cnf");
        std::fs::write(&cnf, OPENSSL_CNF).context(|| format!("writing {}", cnf.display()))?;
        let p = |name: &str| dir.join(name);
        let pki = Pki {
            ca_cert: p("ca.crt"),
            ca_key: p("ca.key"),
            serving_cert: p("apiserver.crt"),
            serving_key: p("apiserver.key"),
            service_account_key: p("sa.key"),
            service_account_pub: p("sa.pub"),
        };
        let csr = p("apiserver.csr");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let serial = format!("0x{}", random_hex(8)?);

        let mut args: Vec<&str> = vec!["req", "-x509", "-new"];
        args.extend(ec);
        args.extend([
            "-keyout",
            s(&pki.ca_key)?,
            "-out",
            s(&pki.ca_cert)?,
            "-days",
            "2",
            "-config",
            s(&cnf)?,
        ]);
        args.extend(["-extensions", "v3_ca", "-subj", "/CN=greenbatch-test-ca"]);
        openssl(&args)?;

        let mut args: Vec<&str> = vec!["req", "-new"];
        args.extend(ec);
        args.extend([
            "-keyout",
            s(&pki.serving_key)?,
            "-out",
            s(&csr)?,
            "-config",
            s(&cnf)?,
            "-subj",
            "/CN=kube-apiserver",
        ]);
        openssl(&args)?;

        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr)?,
            "-CA",
            s(&pki.ca_cert)?,
            "-CAkey",
            s(&pki.ca_key)?,
            "-set_serial",
            &serial,
            "-out",
            s(&pki.serving_cert)?,
            "-days",
            "2",
            "-extfile",
            s(&cnf)?,
            "-extensions",
            "v3_server",
        ])?;

        openssl(&["genrsa", "-out", s(&pki.service_account_key)?, "2048"])?;
        openssl(&[
            "rsa",
            "-in",
            s(&pki.service_account_key)?,
            "-pubout",
            "-out",
            s(&pki.service_account_pub)?,
        ])?;
        Ok(pki)
    }
}

fn s(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| {
        HarnessError::io(
            format!("path {} is not UTF-8", path.display()),
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        )
    })
}

fn openssl(args: &[&str]) -> Result<()> {
    let command = format!("openssl {}", args.join(" "));
    let out = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .context(|| format!("running `{command}` (is openssl installed?)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HarnessError::CommandFailed {
            command,
            status: out.status.to_string(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// `bytes` random bytes from the OS, hex-encoded.
pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| HarnessError::io("reading /dev/urandom", e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
