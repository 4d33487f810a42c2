//! The KServe Open Inference Protocol v2 over HTTP/JSON: request decoding and validation against the
//! model's signature (pure: bytes in, typed tensors or a 4xx error out), and the response bodies.
//!
//! Requests may carry tensors as JSON `data` (flat or nested) or with the binary tensor extension
//! (header `Inference-Header-Content-Length: N`: the first N body bytes are the JSON header, the rest
//! raw little-endian tensor bytes whose sizes `parameters.binary_data_size` gives), which Triton's
//! clients and perf_analyzer use by default. Outputs go back the same way when asked
//! (`parameters.binary_data` on a requested output, or `parameters.binary_data_output` on the
//! request): the response is then a JSON header followed by the raw output bytes.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

mod json_data;

pub use super::tensor::{Datatype, MAX_ELEMENTS, Signature, TensorData, V2Error};

/// A validated request: `items` items of the model's input, ready to batch.
#[derive(Clone, Debug, PartialEq)]
pub struct InferRequest {
    pub id: Option<String>,
    pub items: u32,
    pub data: TensorData,
    /// Outputs asked for; empty means all.
    pub outputs: Vec<RequestedOutput>,
    /// The request's `binary_data_output`: outputs go back as binary unless one says otherwise.
    pub binary_outputs: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    /// Its `parameters.binary_data`, when given.
    pub binary: Option<bool>,
}

impl InferRequest {
    /// Whether output `name` goes back as binary data: its own `binary_data` if the request names
    /// it, else the request's `binary_data_output` (the extension's precedence).
    pub fn binary_output(&self, name: &str) -> bool {
        self.outputs
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| o.binary)
            .unwrap_or(self.binary_outputs)
    }
}

fn as_object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, V2Error> {
    v.as_object()
        .ok_or_else(|| V2Error::bad(format!("{what} must be a JSON object")))
}

/// A boolean parameter of the extension (`binary_data`, `binary_data_output`): absent is `None`; any
/// other type is refused rather than guessed at.
fn bool_param(params: Option<&Value>, key: &str, what: &str) -> Result<Option<bool>, V2Error> {
    let params = match params {
        None | Some(Value::Null) => return Ok(None),
        Some(p) => as_object(p, &format!("{what}.parameters"))?,
    };
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(V2Error::bad(format!(
            "{what}.parameters.{key} must be true or false, got {other}"
        ))),
    }
}

/// Refuses output parameters this server cannot honour, whichever protocol carried them: a
/// classification answers a different tensor (top-k labels) than the one asked for, and an output
/// into shared memory would leave the client reading a region nobody wrote — raw scores back in
/// the response would be misread either way.
pub fn check_output_parameters<'a>(
    name: &str,
    mut parameters: impl Iterator<Item = &'a str>,
) -> Result<(), V2Error> {
    match parameters.find(|p| matches!(*p, "classification" | "shared_memory_region")) {
        Some("classification") => Err(V2Error::bad(format!(
            "output {name:?}: the classification extension is not supported; ask for the raw output"
        ))),
        Some(_) => Err(V2Error::bad(format!(
            "output {name:?}: shared memory is not supported; the output comes back in the response"
        ))),
        None => Ok(()),
    }
}

fn requested_output(o: &Value) -> Result<RequestedOutput, V2Error> {
    let name = o
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| V2Error::bad("outputs[].name must be a string"))?;
    let what = format!("output {name:?}");
    if let Some(p) = o.get("parameters").and_then(Value::as_object) {
        check_output_parameters(name, p.keys().map(String::as_str))?;
    }
    Ok(RequestedOutput {
        name: name.to_string(),
        binary: bool_param(o.get("parameters"), "binary_data", &what)?,
    })
}

pub fn binary_data(bytes: &[u8], dt: Datatype, name: &str) -> Result<TensorData, V2Error> {
    if !bytes.len().is_multiple_of(dt.size()) {
        return Err(V2Error::bad(format!(
            "input {name:?}: {} binary bytes is not a whole number of {}",
            bytes.len(),
            dt.name()
        )));
    }
    let chunks = bytes.chunks_exact(dt.size());
    Ok(match dt {
        Datatype::Fp32 => {
            let v: Vec<f32> = chunks
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(V2Error::bad(format!(
                    "input {name:?}: element {i} is NaN or infinite"
                )));
            }
            TensorData::F32(v)
        }
        Datatype::Int64 => TensorData::I64(
            chunks
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        Datatype::Int32 => TensorData::I32(
            chunks
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Datatype::Uint8 => TensorData::U8(bytes.to_vec()),
    })
}

/// Checks one input tensor's head against the model's signature — its name, datatype and shape
/// (`[items, ...item_shape]`, or `item_shape` for one item) — whatever carried it (JSON or
/// gRPC); its item count and element count.
pub fn check_input(
    name: &str,
    datatype: &str,
    shape: &[i64],
    sig: &Signature,
) -> Result<(u32, u64), V2Error> {
    if name != sig.input_name {
        return Err(V2Error::bad(format!(
            "unknown input {name:?}: the model's input is {:?}",
            sig.input_name
        )));
    }
    if datatype != sig.datatype.name() {
        return Err(V2Error::bad(format!(
            "input {name:?} has datatype {datatype}; the model takes {}",
            sig.datatype.name()
        )));
    }
    if let Some(d) = shape.iter().find(|d| **d < 0) {
        return Err(V2Error::bad(format!(
            "shape dimension {d} is not a non-negative integer"
        )));
    }
    let (items, dims) = if shape.len() == sig.item_shape.len() + 1 {
        (shape[0], &shape[1..])
    } else if shape.len() == sig.item_shape.len() {
        (1, shape)
    } else {
        return Err(V2Error::bad(format!(
            "input {name:?} has shape {shape:?}; the model takes [batch, {:?}]",
            sig.item_shape
        )));
    };
    if dims != sig.item_shape.as_slice() {
        return Err(V2Error::bad(format!(
            "input {name:?} has item shape {dims:?}; the model takes {:?}",
            sig.item_shape
        )));
    }
    if items < 1 {
        return Err(V2Error::bad(format!("input {name:?} has {items} items")));
    }
    let elements = shape
        .iter()
        .try_fold(1u64, |a, d| a.checked_mul(*d as u64))
        .filter(|n| *n <= MAX_ELEMENTS);
    let Some(elements) = elements else {
        return Err(V2Error::bad(format!(
            "input {name:?} shape {shape:?} is absurdly large"
        )));
    };
    if items as u64 > u64::from(sig.max_batch) {
        return Err(V2Error::bad(format!(
            "request has {items} items, more than the max batch size {}: split it into smaller requests",
            sig.max_batch
        )));
    }
    Ok((items as u32, elements))
}

/// The fields of a request read, each left as its JSON text until wanted: only `data` may be
/// large, and it is read into typed values directly (`json_data`). Unknown fields are skipped
/// without being kept; a field given twice is refused.
#[derive(Deserialize)]
struct RequestFields<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    inputs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    outputs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct InputFields<'a> {
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    datatype: Option<&'a RawValue>,
    #[serde(borrow, default)]
    shape: Option<&'a RawValue>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// Fields other than `data` are read whole, up to this size each.
const SMALL_FIELD_BYTES: usize = 64 * 1024;

/// `text` as the fields of a JSON object, or why not (`what` must be a JSON object; malformed
/// JSON; a field twice).
fn object<'a, T: Deserialize<'a>>(text: &'a str, what: &str) -> Result<T, V2Error> {
    // Checked first: serde would also read an array as a struct's fields in order.
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => V2Error::bad(format!("{what} must be a JSON object")),
            Err(e) => V2Error::bad(format!("malformed JSON: {e}")),
        });
    }
    serde_json::from_str(text).map_err(|e| V2Error::bad(format!("malformed JSON: {e}")))
}

/// A field that is not `data`, read whole: at most `SMALL_FIELD_BYTES` of JSON.
fn small(field: Option<&RawValue>, what: &str) -> Result<Option<Value>, V2Error> {
    let Some(raw) = field else {
        return Ok(None);
    };
    if raw.get().len() > SMALL_FIELD_BYTES {
        return Err(V2Error::bad(format!(
            "{what} is {} bytes of JSON; at most {SMALL_FIELD_BYTES} are read",
            raw.get().len()
        )));
    }
    serde_json::from_str(raw.get())
        .map(Some)
        .map_err(|e| V2Error::bad(format!("malformed JSON in {what}: {e}")))
}

/// The first `keep` elements of a JSON array (as text) and how many it has, counted without
/// keeping the rest; `None` when `raw` is not an array.
fn array(raw: &RawValue, keep: usize) -> Option<Result<(Vec<&RawValue>, usize), V2Error>> {
    struct FirstOf(usize);
    impl<'de> serde::de::Visitor<'de> for FirstOf {
        type Value = (Vec<&'de RawValue>, usize);
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut kept = Vec::new();
            let mut count = 0;
            while kept.len() < self.0 {
                match seq.next_element::<&RawValue>()? {
                    Some(e) => kept.push(e),
                    None => return Ok((kept, count)),
                }
                count += 1;
            }
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                count += 1;
            }
            Ok((kept, count))
        }
    }
    if !raw.get().trim_start().starts_with('[') {
        return None;
    }
    let mut parser = serde_json::Deserializer::from_str(raw.get());
    Some(
        serde::Deserializer::deserialize_seq(&mut parser, FirstOf(keep))
            .map_err(|e| V2Error::bad(format!("malformed JSON: {e}"))),
    )
}

/// Decodes and validates one infer request body. `json_len` is the value of the
/// `Inference-Header-Content-Length` header when the binary extension is used.
pub fn decode(
    body: &[u8],
    json_len: Option<usize>,
    sig: &Signature,
) -> Result<InferRequest, V2Error> {
    if body.is_empty() {
        return Err(V2Error::bad("empty request body"));
    }
    let (head, mut binary) = match json_len {
        Some(n) if n > body.len() => {
            return Err(V2Error::bad(format!(
                "Inference-Header-Content-Length {n} exceeds the body's {} bytes",
                body.len()
            )));
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let head = std::str::from_utf8(head)
        .map_err(|e| V2Error::bad(format!("malformed JSON: not UTF-8: {e}")))?;
    let obj: RequestFields = object(head, "the request")?;
    let id = match small(obj.id, "`id`")? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => return Err(V2Error::bad(format!("`id` must be a string, got {other}"))),
    };
    let (inputs, count) = obj
        .inputs
        .and_then(|raw| array(raw, 1))
        .ok_or_else(|| V2Error::bad("`inputs` must be a non-empty array"))??;
    let (Some(input), 1) = (inputs.first(), count) else {
        return Err(sig.wrong_input_count(count));
    };
    let input: InputFields = object(input.get(), "inputs[0]")?;
    let name = small(input.name, "inputs[0].name")?;
    let name = name
        .as_ref()
        .and_then(Value::as_str)
        .ok_or_else(|| V2Error::bad("inputs[0].name must be a string"))?;
    let datatype = small(input.datatype, "inputs[0].datatype")?;
    let datatype = datatype
        .as_ref()
        .and_then(Value::as_str)
        .ok_or_else(|| V2Error::bad("inputs[0].datatype must be a string"))?;
    let shape: Vec<i64> = small(input.shape, "inputs[0].shape")?
        .as_ref()
        .and_then(Value::as_array)
        .ok_or_else(|| V2Error::bad("inputs[0].shape must be an array of integers"))?
        .iter()
        .map(|d| {
            d.as_i64().filter(|d| *d >= 0).ok_or_else(|| {
                V2Error::bad(format!("shape dimension {d} is not a non-negative integer"))
            })
        })
        .collect::<Result<_, _>>()?;
    let (items, elements) = check_input(name, datatype, &shape, sig)?;
    let params = small(input.parameters, "inputs[0].parameters")?;
    let binary_size = params
        .as_ref()
        .and_then(Value::as_object)
        .and_then(|p| p.get("binary_data_size"))
        .and_then(Value::as_u64);
    let data = match (input.data, binary_size) {
        (Some(d), None) => json_data::read(d, sig.datatype, (name, &shape, elements))?,
        (None, Some(size)) => {
            let size =
                usize::try_from(size).map_err(|_| V2Error::bad("binary_data_size too large"))?;
            if size > binary.len() {
                return Err(V2Error::bad(format!(
                    "input {name:?}: binary_data_size {size} exceeds the {} binary bytes sent",
                    binary.len()
                )));
            }
            let (mine, rest) = binary.split_at(size);
            binary = rest;
            binary_data(mine, sig.datatype, name)?
        }
        (Some(_), Some(_)) => {
            return Err(V2Error::bad(format!(
                "input {name:?} has both `data` and binary_data_size"
            )));
        }
        (None, None) => return Err(V2Error::bad(format!("input {name:?} has no `data`"))),
    };
    if !binary.is_empty() {
        return Err(V2Error::bad(format!(
            "{} trailing binary bytes belong to no input",
            binary.len()
        )));
    }
    if data.element_count() as u64 != elements {
        return Err(V2Error::bad(format!(
            "input {name:?}: shape {shape:?} needs {elements} elements, got {}",
            data.element_count()
        )));
    }
    let outputs = match small(obj.outputs, "`outputs`")? {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(outs)) => outs
            .iter()
            .map(requested_output)
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(V2Error::bad("`outputs` must be an array")),
    };
    let parameters = small(obj.parameters, "the request's parameters")?;
    let binary_outputs =
        bool_param(parameters.as_ref(), "binary_data_output", "the request")?.unwrap_or(false);
    Ok(InferRequest {
        id,
        items,
        data,
        outputs,
        binary_outputs,
    })
}

#[derive(Clone)]
pub struct OutputTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
    /// Sent as raw bytes after the JSON header instead of as JSON numbers.
    pub binary: bool,
}

pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    pub outputs: Vec<OutputTensor>,
}

/// A response body ready to send. With any binary output it is the JSON header followed by the
/// outputs' bytes, and `json_len` is the `Inference-Header-Content-Length` to send with it.
#[derive(Debug)]
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub json_len: Option<usize>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

#[derive(Serialize)]
struct OutputHeader<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a [f32]>,
}

#[derive(Serialize)]
struct ResponseHeader<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputHeader<'a>>,
}

impl InferResponse {
    /// The body as the protocol lays it out: binary outputs' bytes (little-endian, row-major) follow
    /// the JSON in the order the outputs are listed.
    pub fn encode(&self) -> Result<EncodedResponse, V2Error> {
        // JSON has no NaN or infinity (serde_json would write null, read back as a missing
        // number); binary outputs carry them as they are.
        if let Some(o) = self
            .outputs
            .iter()
            .find(|o| !o.binary && o.data.iter().any(|x| !x.is_finite()))
        {
            return Err(V2Error {
                status: 500,
                message: format!(
                    "output {} holds NaN or infinite values, which JSON cannot carry: ask for it as binary data (parameters.binary_data_output: true, or over gRPC)",
                    o.name
                ),
            });
        }
        let outputs = self
            .outputs
            .iter()
            .map(|o| OutputHeader {
                name: &o.name,
                datatype: "FP32",
                shape: &o.shape,
                parameters: o.binary.then(|| BinarySize {
                    binary_data_size: o.data.len() * std::mem::size_of::<f32>(),
                }),
                data: (!o.binary).then_some(o.data.as_slice()),
            })
            .collect();
        let header = ResponseHeader {
            model_name: &self.model_name,
            model_version: &self.model_version,
            id: self.id.as_deref(),
            outputs,
        };
        let mut body = serde_json::to_vec(&header).map_err(|e| V2Error {
            status: 500,
            message: format!("encoding the response: {e}"),
        })?;
        if !self.outputs.iter().any(|o| o.binary) {
            return Ok(EncodedResponse {
                body,
                json_len: None,
            });
        }
        let json_len = body.len();
        for o in self.outputs.iter().filter(|o| o.binary) {
            body.reserve(o.data.len() * std::mem::size_of::<f32>());
            for x in &o.data {
                body.extend_from_slice(&x.to_le_bytes());
            }
        }
        Ok(EncodedResponse {
            body,
            json_len: Some(json_len),
        })
    }
}

#[cfg(test)]
mod tests;
