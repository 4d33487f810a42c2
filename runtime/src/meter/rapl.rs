//! RAPL (Linux powercap) package energy for CPU hosts: the sum over top-level `intel-rapl:N` zones,
//! with counter wrap-around handled. Often unreadable in VMs and containers; then auto-detection
//! falls back to "no meter".

use super::{EnergyMeter, MeterError};
use greenbatch_core::MeterKind;
use std::path::{Path, PathBuf};

struct Zone {
    energy: PathBuf,
    max_uj: u64,
    last_uj: u64,
    wraps: u64,
}

pub struct Rapl {
    zones: Vec<Zone>,
}

fn read_u64(p: &Path) -> Result<u64, MeterError> {
    let s = std::fs::read_to_string(p).map_err(|e| MeterError(format!("{}: {e}", p.display())))?;
    s.trim()
        .parse()
        .map_err(|e| MeterError(format!("{}: {e}", p.display())))
}

impl Rapl {
    pub fn open() -> Result<Self, MeterError> {
        Self::open_at(Path::new("/sys/class/powercap"))
    }

    pub fn open_at(root: &Path) -> Result<Self, MeterError> {
        let entries = std::fs::read_dir(root)
            .map_err(|e| MeterError(format!("no RAPL at {}: {e}", root.display())))?;
        let mut zones = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            // Top-level package zones only (intel-rapl:0, not the sub-zone intel-rapl:0:0).
            if !name.starts_with("intel-rapl:") || name.matches(':').count() != 1 {
                continue;
            }
            let dir = entry.path();
            let energy = dir.join("energy_uj");
            let last_uj = read_u64(&energy)?;
            let max_uj = read_u64(&dir.join("max_energy_range_uj")).unwrap_or(u64::MAX);
            zones.push(Zone {
                energy,
                max_uj,
                last_uj,
                wraps: 0,
            });
        }
        if zones.is_empty() {
            return Err(MeterError(format!(
                "no readable intel-rapl package zone under {}",
                root.display()
            )));
        }
        Ok(Rapl { zones })
    }
}

impl EnergyMeter for Rapl {
    fn kind(&self) -> MeterKind {
        MeterKind::Rapl
    }
    fn joules(&mut self) -> Result<f64, MeterError> {
        let mut total = 0.0;
        for z in &mut self.zones {
            let uj = read_u64(&z.energy)?;
            if uj < z.last_uj {
                z.wraps += 1;
            }
            z.last_uj = uj;
            total += (z.wraps as f64 * z.max_uj as f64 + uj as f64) / 1e6;
        }
        Ok(total)
    }
    fn note(&self) -> Option<String> {
        Some("RAPL package energy: the whole CPU package, not only this process".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_packages_and_handles_wraparound() {
        let dir = tempfile::tempdir().unwrap();
        let zone = |name: &str, uj: u64| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("energy_uj"), format!("{uj}\n")).unwrap();
            std::fs::write(d.join("max_energy_range_uj"), "1000000\n").unwrap();
        };
        zone("intel-rapl:0", 900_000);
        zone("intel-rapl:1", 100_000);
        zone("intel-rapl:0:0", 5); // sub-zone: ignored
        let mut m = Rapl::open_at(dir.path()).unwrap();
        assert!((m.joules().unwrap() - 1.0).abs() < 1e-9);
        zone("intel-rapl:0", 100_000); // wrapped past 1 J
        assert!((m.joules().unwrap() - 1.2).abs() < 1e-9);
        assert!(Rapl::open_at(&dir.path().join("missing")).is_err());
    }
}
