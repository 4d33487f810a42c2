//! The KServe Open Inference Protocol v2 over HTTP/JSON: request decoding and validation against the
//! model's signature (pure: bytes in, typed tensors or a 4xx error out), and the response bodies.
//!
//! Requests may carry tensors as JSON `data` (flat or nested) or with the binary tensor extension
//! (header `Inference-Header-Content-Length: N`: the first N body bytes are the JSON header, the rest
//! raw little-endian tensor bytes whose sizes `parameters.binary_data_size` gives), which Triton's
//! clients and perf_analyzer use by default. Outputs go back the same way when asked
//! (`parameters.binary_data` on a requested output, or `parameters.binary_data_output` on the
//! request): the response is then a JSON header followed by the raw output bytes.

use serde::Serialize;
use serde_json::{Map, Value};

/// Largest number of elements a declared shape may claim; beyond it a request is refused before any
/// allocation (absurd shapes must not cost memory).
pub const MAX_ELEMENTS: u64 = 1 << 28;

#[derive(Debug, Clone, PartialEq)]
pub struct V2Error {
    pub status: u16,
    pub message: String,
}

impl V2Error {
    pub fn bad(message: impl Into<String>) -> Self {
        V2Error {
            status: 400,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for V2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

/// Element types the server accepts, by their v2 names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datatype {
    Fp32,
    Int64,
    Int32,
    Uint8,
}

impl Datatype {
    pub fn name(self) -> &'static str {
        match self {
            Datatype::Fp32 => "FP32",
            Datatype::Int64 => "INT64",
            Datatype::Int32 => "INT32",
            Datatype::Uint8 => "UINT8",
        }
    }
    pub fn triton_config_name(self) -> &'static str {
        match self {
            Datatype::Fp32 => "TYPE_FP32",
            Datatype::Int64 => "TYPE_INT64",
            Datatype::Int32 => "TYPE_INT32",
            Datatype::Uint8 => "TYPE_UINT8",
        }
    }
    fn size(self) -> usize {
        match self {
            Datatype::Fp32 | Datatype::Int32 => 4,
            Datatype::Int64 => 8,
            Datatype::Uint8 => 1,
        }
    }
    pub fn from_dtype(d: greenbatch_crds::Dtype) -> Option<Self> {
        use greenbatch_crds::Dtype;
        match d {
            Dtype::Float32 => Some(Datatype::Fp32),
            Dtype::Int64 => Some(Datatype::Int64),
            Dtype::Int32 => Some(Datatype::Int32),
            Dtype::Uint8 => Some(Datatype::Uint8),
            Dtype::Float16 | Dtype::Bfloat16 => None,
        }
    }
}

/// What the served model takes: one input tensor of `item_shape` per item.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    pub input_name: String,
    pub datatype: Datatype,
    pub item_shape: Vec<i64>,
    pub max_batch: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
}

impl TensorData {
    pub fn element_count(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::U8(v) => v.len(),
        }
    }
}

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

fn flatten(v: &Value, out: &mut Vec<Value>, depth: usize) -> Result<(), V2Error> {
    if depth > 16 {
        return Err(V2Error::bad("`data` is nested deeper than 16 levels"));
    }
    match v {
        Value::Array(items) => items.iter().try_for_each(|x| flatten(x, out, depth + 1)),
        other => {
            out.push(other.clone());
            Ok(())
        }
    }
}

fn json_data(values: &[Value], dt: Datatype, name: &str) -> Result<TensorData, V2Error> {
    let bad = |i: usize, v: &Value| {
        V2Error::bad(format!(
            "input {name:?}: element {i} ({v}) is not a valid {}",
            dt.name()
        ))
    };
    Ok(match dt {
        Datatype::Fp32 => TensorData::F32(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_f64()
                        .map(|x| x as f32)
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| bad(i, v))
                })
                .collect::<Result<_, _>>()?,
        ),
        Datatype::Int64 => TensorData::I64(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_i64().ok_or_else(|| bad(i, v)))
                .collect::<Result<_, _>>()?,
        ),
        Datatype::Int32 => TensorData::I32(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_i64()
                        .and_then(|x| i32::try_from(x).ok())
                        .ok_or_else(|| bad(i, v))
                })
                .collect::<Result<_, _>>()?,
        ),
        Datatype::Uint8 => TensorData::U8(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_u64()
                        .and_then(|x| u8::try_from(x).ok())
                        .ok_or_else(|| bad(i, v))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

pub fn binary_data(bytes: &[u8], dt: Datatype, name: &str) -> Result<TensorData, V2Error> {
    if bytes.len() % dt.size() != 0 {
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
    let json: Value =
        serde_json::from_slice(head).map_err(|e| V2Error::bad(format!("malformed JSON: {e}")))?;
    let obj = as_object(&json, "the request")?;
    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(V2Error::bad(format!("`id` must be a string, got {other}"))),
    };
    let inputs = obj
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| V2Error::bad("`inputs` must be a non-empty array"))?;
    if inputs.len() != 1 {
        return Err(V2Error::bad(format!(
            "the model takes 1 input ({:?}), got {}",
            sig.input_name,
            inputs.len()
        )));
    }
    let input = as_object(&inputs[0], "inputs[0]")?;
    let name = input
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| V2Error::bad("inputs[0].name must be a string"))?;
    let datatype = input
        .get("datatype")
        .and_then(Value::as_str)
        .ok_or_else(|| V2Error::bad("inputs[0].datatype must be a string"))?;
    let shape: Vec<i64> = input
        .get("shape")
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
    let params = input.get("parameters").and_then(Value::as_object);
    let binary_size = params
        .and_then(|p| p.get("binary_data_size"))
        .and_then(Value::as_u64);
    let data = match (input.get("data"), binary_size) {
        (Some(d), None) => {
            let mut flat = Vec::new();
            flatten(d, &mut flat, 0)?;
            json_data(&flat, sig.datatype, name)?
        }
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
    let outputs = match obj.get("outputs") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(outs)) => outs
            .iter()
            .map(requested_output)
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(V2Error::bad("`outputs` must be an array")),
    };
    let binary_outputs =
        bool_param(obj.get("parameters"), "binary_data_output", "the request")?.unwrap_or(false);
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
