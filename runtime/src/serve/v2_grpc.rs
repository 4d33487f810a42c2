//! The KServe Open Inference Protocol v2 over gRPC (service `inference.GRPCInferenceService`): its
//! messages, derived with prost from the protocol's field numbers (no protoc, no generated file),
//! and the pure conversions between them and the server's typed requests — checked against the
//! model's signature exactly as the HTTP/JSON requests are (`v2::check_input`).
//!
//! Only what this server uses is declared: the BOOL, UINT64, FP64 and BYTES content fields are
//! left out, so a request using them decodes as one without contents and is refused. Triton's
//! clients (`tritonclient.grpc`) speak a superset of the same service and messages.

use super::v2::{self, Datatype, InferRequest, RequestedOutput, Signature, TensorData, V2Error};
use super::wire::{Value, values_in};
use std::collections::HashMap;

/// The gRPC service name (its path prefix).
pub const SERVICE: &str = "inference.GRPCInferenceService";

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerLiveRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerLiveResponse {
    #[prost(bool, tag = "1")]
    pub live: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerReadyRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerReadyResponse {
    #[prost(bool, tag = "1")]
    pub ready: bool,
}

/// A model by name and version: the request of ModelReady, ModelMetadata and Triton's
/// ModelConfig (the same two fields in each).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelRef {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

pub type ModelReadyRequest = ModelRef;
pub type ModelMetadataRequest = ModelRef;
pub type ModelConfigRequest = ModelRef;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelReadyResponse {
    #[prost(bool, tag = "1")]
    pub ready: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerMetadataRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerMetadataResponse {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(string, repeated, tag = "3")]
    pub extensions: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub datatype: String,
    #[prost(int64, repeated, tag = "3")]
    pub shape: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelMetadataResponse {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, repeated, tag = "2")]
    pub versions: Vec<String>,
    #[prost(string, tag = "3")]
    pub platform: String,
    #[prost(message, repeated, tag = "4")]
    pub inputs: Vec<TensorMetadata>,
    #[prost(message, repeated, tag = "5")]
    pub outputs: Vec<TensorMetadata>,
}

/// Triton's model configuration extension (rpc `ModelConfig`), which perf_analyzer asks for
/// before it batches: the fields of Triton's `ModelConfig` it reads (name, platform,
/// max_batch_size, inputs and outputs), with their field numbers there.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelConfigResponse {
    #[prost(message, optional, tag = "1")]
    pub config: Option<ModelConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelConfig {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub platform: String,
    #[prost(int32, tag = "4")]
    pub max_batch_size: i32,
    #[prost(message, repeated, tag = "5")]
    pub input: Vec<ModelTensorConfig>,
    #[prost(message, repeated, tag = "6")]
    pub output: Vec<ModelOutputConfig>,
    /// The dynamic batcher, as the HTTP config says it (Triton's `scheduling_choice`).
    #[prost(message, optional, tag = "11")]
    pub dynamic_batching: Option<ModelDynamicBatching>,
}

/// Triton's `ModelDynamicBatching`: only the delay this server has.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelDynamicBatching {
    #[prost(uint64, tag = "2")]
    pub max_queue_delay_microseconds: u64,
}

/// An input of a Triton model configuration (`ModelInput`): dims without the batch dimension.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelTensorConfig {
    #[prost(string, tag = "1")]
    pub name: String,
    /// Triton's `DataType` enum value ([`triton_data_type`]).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(int64, repeated, tag = "4")]
    pub dims: Vec<i64>,
}

/// An output of a Triton model configuration (`ModelOutput`; its dims are field 3).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelOutputConfig {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(int64, repeated, tag = "3")]
    pub dims: Vec<i64>,
}

/// Triton's `DataType` enum value of a datatype.
pub fn triton_data_type(dt: Datatype) -> i32 {
    match dt {
        Datatype::Uint8 => 2,
        Datatype::Int32 => 8,
        Datatype::Int64 => 9,
        Datatype::Fp32 => 11,
    }
}

/// FP32 in Triton's `DataType` enum (the model's output).
pub const TRITON_FP32: i32 = 11;

/// A request or tensor parameter: one of a bool, an int64 or a string.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InferParameter {
    #[prost(oneof = "ParameterChoice", tags = "1, 2, 3")]
    pub choice: Option<ParameterChoice>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ParameterChoice {
    #[prost(bool, tag = "1")]
    Bool(bool),
    #[prost(int64, tag = "2")]
    Int64(i64),
    #[prost(string, tag = "3")]
    String(String),
}

/// Tensor contents as typed repeated fields (the alternative to raw little-endian bytes).
#[derive(Clone, PartialEq, prost::Message)]
pub struct InferTensorContents {
    /// INT8, INT16, INT32.
    #[prost(int32, repeated, tag = "2")]
    pub int_contents: Vec<i32>,
    #[prost(int64, repeated, tag = "3")]
    pub int64_contents: Vec<i64>,
    /// UINT8, UINT16, UINT32.
    #[prost(uint32, repeated, tag = "4")]
    pub uint_contents: Vec<u32>,
    #[prost(float, repeated, tag = "6")]
    pub fp32_contents: Vec<f32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InferInputTensor {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub datatype: String,
    #[prost(int64, repeated, tag = "3")]
    pub shape: Vec<i64>,
    #[prost(map = "string, message", tag = "4")]
    pub parameters: HashMap<String, InferParameter>,
    #[prost(message, optional, tag = "5")]
    pub contents: Option<InferTensorContents>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InferRequestedOutputTensor {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(map = "string, message", tag = "2")]
    pub parameters: HashMap<String, InferParameter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelInferRequest {
    #[prost(string, tag = "1")]
    pub model_name: String,
    #[prost(string, tag = "2")]
    pub model_version: String,
    #[prost(string, tag = "3")]
    pub id: String,
    #[prost(map = "string, message", tag = "4")]
    pub parameters: HashMap<String, InferParameter>,
    #[prost(message, repeated, tag = "5")]
    pub inputs: Vec<InferInputTensor>,
    #[prost(message, repeated, tag = "6")]
    pub outputs: Vec<InferRequestedOutputTensor>,
    /// One entry per input, in order, when the tensors travel as raw bytes. `Bytes`: decoded from
    /// the received buffer without a copy (hundreds of kilobytes per image request), and cloned
    /// by a client for the cost of a reference count.
    #[prost(bytes = "bytes", repeated, tag = "7")]
    pub raw_input_contents: Vec<bytes::Bytes>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InferOutputTensor {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub datatype: String,
    #[prost(int64, repeated, tag = "3")]
    pub shape: Vec<i64>,
    #[prost(map = "string, message", tag = "4")]
    pub parameters: HashMap<String, InferParameter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelInferResponse {
    #[prost(string, tag = "1")]
    pub model_name: String,
    #[prost(string, tag = "2")]
    pub model_version: String,
    #[prost(string, tag = "3")]
    pub id: String,
    #[prost(map = "string, message", tag = "4")]
    pub parameters: HashMap<String, InferParameter>,
    #[prost(message, repeated, tag = "5")]
    pub outputs: Vec<InferOutputTensor>,
    /// The outputs' contents as raw little-endian bytes, one entry per output (what Triton's
    /// clients read, and the cheapest to encode).
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub raw_output_contents: Vec<Vec<u8>>,
}

/// The typed contents of `name` as the model's datatype, or why not.
fn typed_contents(
    c: &InferTensorContents,
    dt: Datatype,
    name: &str,
) -> Result<TensorData, V2Error> {
    let other_fields = |used: usize| {
        c.int_contents.len()
            + c.int64_contents.len()
            + c.uint_contents.len()
            + c.fp32_contents.len()
            != used
    };
    let data = match dt {
        Datatype::Fp32 => {
            if let Some(i) = c.fp32_contents.iter().position(|x| !x.is_finite()) {
                return Err(V2Error::bad(format!(
                    "input {name:?}: element {i} is NaN or infinite"
                )));
            }
            TensorData::F32(c.fp32_contents.clone())
        }
        Datatype::Int64 => TensorData::I64(c.int64_contents.clone()),
        Datatype::Int32 => TensorData::I32(c.int_contents.clone()),
        Datatype::Uint8 => TensorData::U8(
            c.uint_contents
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    u8::try_from(*v).map_err(|_| {
                        V2Error::bad(format!("input {name:?}: element {i} ({v}) is not a UINT8"))
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    if other_fields(data.element_count()) {
        return Err(V2Error::bad(format!(
            "input {name:?}: contents in a field other than the one for {}",
            dt.name()
        )));
    }
    Ok(data)
}

/// At most this many parameters in a request, an input or a requested output.
const MAX_PARAMETERS: usize = 64;
/// At most this many requested outputs (the model has one).
const MAX_OUTPUTS: usize = 16;
/// At most this many dimensions in an input's shape.
const MAX_DIMS: usize = 32;

/// A ModelInfer message's repeated fields counted on the wire, before it is decoded: prost
/// would build a 216-byte tensor for each 2-byte empty `inputs` entry and an 8-byte integer
/// for each 1-byte varint, so a message within the size limit could take ~100 times its size
/// in memory before any check ran. Refused here: more than one input or raw content, more
/// parameters, outputs or shape dimensions than anyone sends, more contents than the largest
/// request the model takes (`max_batch` items). A message that is not well-formed is left to
/// the decoder to say why.
pub fn check_infer_bounds(message: &[u8], sig: &Signature) -> Result<(), V2Error> {
    let item_elements = sig
        .item_shape
        .iter()
        .try_fold(1usize, |n, d| n.checked_mul(usize::try_from(*d).ok()?));
    let max_elements = item_elements
        .and_then(|n| n.checked_mul(sig.max_batch as usize))
        .unwrap_or(usize::MAX);
    let (mut inputs, mut outputs, mut raw, mut parameters) = (0usize, 0usize, 0usize, 0usize);
    // A field the walk cannot read ends it, and what it counted so far is judged: a decoder
    // builds as it reads, so a million entries before a broken tail would cost their memory.
    for field in super::wire::fields(message) {
        let Ok((number, value)) = field else {
            break;
        };
        match (number, value) {
            (4, _) => parameters += 1,
            (5, Value::Bytes(input)) => {
                inputs += 1;
                check_input_bounds(input, max_elements, &sig.input_name)?;
            }
            (5, _) => inputs += 1,
            (6, Value::Bytes(output)) => {
                outputs += 1;
                let output_parameters = super::wire::fields(output)
                    .filter(|f| matches!(f, Ok((2, _))))
                    .count();
                bounded(
                    "parameters of a requested output",
                    output_parameters,
                    MAX_PARAMETERS,
                )?;
            }
            (6, _) => outputs += 1,
            (7, _) => raw += 1,
            _ => {}
        }
    }
    if inputs > 1 {
        return Err(sig.wrong_input_count(inputs));
    }
    if raw > 1 {
        return Err(V2Error::bad(format!(
            "{raw} raw_input_contents for 1 input"
        )));
    }
    bounded("parameters", parameters, MAX_PARAMETERS)?;
    bounded("requested outputs", outputs, MAX_OUTPUTS)
}

fn bounded(what: &str, count: usize, max: usize) -> Result<(), V2Error> {
    if count > max {
        return Err(V2Error::bad(format!(
            "{count} {what}: at most {max} are accepted"
        )));
    }
    Ok(())
}

/// One `inputs` entry's shape, parameters and typed contents counted (see `check_infer_bounds`).
fn check_input_bounds(input: &[u8], max_elements: usize, name: &str) -> Result<(), V2Error> {
    let (mut dims, mut parameters, mut elements) = (0usize, 0usize, 0usize);
    for field in super::wire::fields(input) {
        let Ok((number, value)) = field else {
            break;
        };
        match (number, value) {
            (3, v) => dims += values_in(v, 0),
            (4, _) => parameters += 1,
            (5, Value::Bytes(contents)) => {
                for typed in super::wire::fields(contents).map_while(Result::ok) {
                    elements += match typed {
                        // int, int64, uint: varints; fp32: 4 bytes each.
                        (2..=4, v) => values_in(v, 0),
                        (6, v) => values_in(v, 4),
                        _ => 0,
                    };
                }
            }
            _ => {}
        }
    }
    bounded("shape dimensions", dims, MAX_DIMS)?;
    bounded("parameters of an input", parameters, MAX_PARAMETERS)?;
    if elements > max_elements {
        return Err(V2Error::bad(format!(
            "input {name:?} carries {elements} elements in its contents, more than the {max_elements} of the largest request the model takes"
        )));
    }
    Ok(())
}

/// A gRPC infer request as the server's typed request, checked against the model's signature:
/// one input, its name, datatype and shape, its contents raw (`raw_input_contents`) or typed,
/// and as many elements as its shape says. Outputs come back raw whatever is asked.
pub fn decode_infer(r: &ModelInferRequest, sig: &Signature) -> Result<InferRequest, V2Error> {
    if r.inputs.len() != 1 {
        return Err(sig.wrong_input_count(r.inputs.len()));
    }
    let input = &r.inputs[0];
    let (items, elements) = v2::check_input(&input.name, &input.datatype, &input.shape, sig)?;
    let data = match (r.raw_input_contents.as_slice(), &input.contents) {
        ([], Some(c)) => typed_contents(c, sig.datatype, &input.name)?,
        ([raw], None) => v2::binary_data(raw, sig.datatype, &input.name)?,
        ([], None) if input.parameters.contains_key("shared_memory_region") => {
            return Err(V2Error::bad(format!(
                "input {:?}: shared memory is not supported; send the tensor in the request",
                input.name
            )));
        }
        ([], None) => {
            return Err(V2Error::bad(format!(
                "input {:?} has no contents (raw_input_contents or contents)",
                input.name
            )));
        }
        ([_], Some(_)) => {
            return Err(V2Error::bad(format!(
                "input {:?} has both raw_input_contents and contents",
                input.name
            )));
        }
        (raw, _) => {
            return Err(V2Error::bad(format!(
                "{} raw_input_contents for 1 input",
                raw.len()
            )));
        }
    };
    if data.element_count() as u64 != elements {
        return Err(V2Error::bad(format!(
            "input {:?}: shape {:?} needs {elements} elements, got {}",
            input.name,
            input.shape,
            data.element_count()
        )));
    }
    for o in &r.outputs {
        v2::check_output_parameters(&o.name, o.parameters.keys().map(String::as_str))?;
    }
    Ok(InferRequest {
        id: (!r.id.is_empty()).then(|| r.id.clone()),
        items,
        data,
        outputs: r
            .outputs
            .iter()
            .map(|o| RequestedOutput {
                name: o.name.clone(),
                binary: Some(true),
            })
            .collect(),
        binary_outputs: true,
    })
}

/// The response: the FP32 output of `shape` as raw little-endian bytes.
pub fn encode_infer(
    model_name: &str,
    id: Option<String>,
    output_name: &str,
    shape: Vec<i64>,
    data: &[f32],
) -> ModelInferResponse {
    let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    ModelInferResponse {
        model_name: model_name.to_string(),
        model_version: "1".into(),
        id: id.unwrap_or_default(),
        parameters: HashMap::new(),
        outputs: vec![InferOutputTensor {
            name: output_name.to_string(),
            datatype: "FP32".into(),
            shape,
            parameters: HashMap::new(),
        }],
        raw_output_contents: vec![raw],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn sig() -> Signature {
        Signature {
            input_name: "input__0".into(),
            datatype: Datatype::Fp32,
            item_shape: vec![3, 2],
            max_batch: 4,
        }
    }

    fn request(
        shape: Vec<i64>,
        raw: Option<Vec<u8>>,
        typed: Option<Vec<f32>>,
    ) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "m".into(),
            id: "r-1".into(),
            inputs: vec![InferInputTensor {
                name: "input__0".into(),
                datatype: "FP32".into(),
                shape,
                contents: typed.map(|v| InferTensorContents {
                    fp32_contents: v,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            raw_input_contents: raw.into_iter().map(bytes::Bytes::from).collect(),
            ..Default::default()
        }
    }

    fn le(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn raw_and_typed_contents_decode_to_the_same_request() {
        let values: Vec<f32> = (0..12).map(|i| i as f32 / 2.0).collect();
        let raw = decode_infer(&request(vec![2, 3, 2], Some(le(&values)), None), &sig()).unwrap();
        let typed =
            decode_infer(&request(vec![2, 3, 2], None, Some(values.clone())), &sig()).unwrap();
        assert_eq!(raw, typed);
        assert_eq!(raw.items, 2);
        assert_eq!(raw.id.as_deref(), Some("r-1"));
        assert_eq!(raw.data, TensorData::F32(values));
        // Through the wire format and back.
        let bytes = request(vec![2, 3, 2], Some(le(&[1.0; 12])), None).encode_to_vec();
        let back = ModelInferRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(decode_infer(&back, &sig()).unwrap().items, 2);
    }

    #[test]
    fn repeated_fields_are_counted_on_the_wire_before_anything_is_built() {
        let refused = |message: &[u8], want: &str| {
            let e = check_infer_bounds(message, &sig()).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(want), "{want}: {}", e.message);
        };
        // A million empty `inputs` entries in 2 MB (216 MB decoded).
        refused(
            &[0x2a, 0x00].repeat(1 << 20),
            "takes 1 input (\"input__0\"), got 1048576",
        );
        // The same behind a group (which decoders skip) or before a broken tail (decoders
        // build what they read before they fail).
        let many = [0x2a, 0x00].repeat(1 << 20);
        refused(&[&[0x7b, 0x7c][..], &many].concat(), "got 1048576");
        refused(&[&many[..], &[0x08, 0x80]].concat(), "got 1048576");
        refused(&[0x32, 0x00].repeat(17), "17 requested outputs");
        refused(&[0x3a, 0x00].repeat(2), "2 raw_input_contents");
        refused(&[0x22, 0x00].repeat(65), "65 parameters");
        // One input whose packed shape holds a million 1-byte dims (8 MB decoded) ...
        let input = |fields: Vec<u8>| {
            let mut m = vec![0x2a];
            prost::encoding::encode_varint(fields.len() as u64, &mut m);
            m.extend(fields);
            m
        };
        let packed = |tag: u8, values: Vec<u8>| {
            let mut f = vec![tag];
            prost::encoding::encode_varint(values.len() as u64, &mut f);
            f.extend(values);
            f
        };
        refused(
            &input(packed(0x1a, vec![1; 1 << 20])),
            "1048576 shape dimensions",
        );
        // ... or int64 contents beyond the largest request (4 items of 3x2 = 24 elements).
        let contents = |values: Vec<u8>| packed(0x2a, packed(0x1a, values));
        refused(&input(contents(vec![1; 25])), "25 elements");
        refused(&input(contents([0x80, 1].repeat(25))), "25 elements");
        check_infer_bounds(&input(contents(vec![1; 24])), &sig()).unwrap();
        // A well-formed request passes; a malformed one is left to the decoder.
        let ok = request(vec![4, 3, 2], None, Some(vec![1.0; 24])).encode_to_vec();
        check_infer_bounds(&ok, &sig()).unwrap();
        check_infer_bounds(&[0x2a, 0x05, 0x00], &sig()).unwrap();
    }

    #[test]
    fn bad_requests_are_refused_with_why() {
        let cases: Vec<(ModelInferRequest, &str)> = vec![
            (
                request(vec![2, 3, 2], Some(le(&[1.0; 11])), None),
                "needs 12 elements",
            ),
            (
                request(vec![2, 3, 2], Some(vec![0; 7]), None),
                "whole number",
            ),
            (
                request(vec![2, 3, 3], Some(le(&[1.0; 18])), None),
                "item shape",
            ),
            (
                request(vec![9, 3, 2], Some(le(&[1.0; 54])), None),
                "max batch size",
            ),
            (request(vec![1, 3, 2], None, None), "no contents"),
            (
                request(vec![1, 3, 2], Some(le(&[1.0; 6])), Some(vec![1.0; 6])),
                "both",
            ),
            (request(vec![1, 3, 2], None, Some(vec![f32::NAN; 6])), "NaN"),
            (
                request(vec![-1, 3, 2], None, Some(vec![1.0; 6])),
                "non-negative",
            ),
            (
                ModelInferRequest {
                    inputs: vec![],
                    ..Default::default()
                },
                "takes 1 input",
            ),
        ];
        for (r, want) in cases {
            let e = decode_infer(&r, &sig()).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(want), "{want}: {}", e.message);
        }
        // An output asked for as classes, or into shared memory: refused, as over HTTP.
        for parameter in ["classification", "shared_memory_region"] {
            let mut r = request(vec![1, 3, 2], None, Some(vec![1.0; 6]));
            r.outputs = vec![InferRequestedOutputTensor {
                name: "output__0".into(),
                parameters: HashMap::from([(
                    parameter.to_string(),
                    InferParameter {
                        choice: Some(ParameterChoice::Int64(3)),
                    },
                )]),
            }];
            let e = decode_infer(&r, &sig()).unwrap_err();
            assert!(
                e.message.contains("not supported"),
                "{parameter}: {}",
                e.message
            );
        }
        let mut wrong_type = request(vec![1, 3, 2], None, Some(vec![1.0; 6]));
        wrong_type.inputs[0].datatype = "INT64".into();
        assert!(
            decode_infer(&wrong_type, &sig())
                .unwrap_err()
                .message
                .contains("datatype")
        );
        let mut wrong_field = request(vec![1, 3, 2], None, None);
        wrong_field.inputs[0].contents = Some(InferTensorContents {
            int64_contents: vec![1; 6],
            ..Default::default()
        });
        assert!(
            decode_infer(&wrong_field, &sig())
                .unwrap_err()
                .message
                .contains("other than")
        );
    }

    /// A length-delimited protobuf field written by hand (field number, wire type 2): the bytes
    /// below are the protocol's, independent of prost, so a wrong tag in the structs above fails.
    fn field(number: u8, body: &[u8]) -> Vec<u8> {
        assert!(
            number < 16 && body.len() < 128,
            "one-byte tags and lengths only"
        );
        [&[number << 3 | 2, body.len() as u8][..], body].concat()
    }

    #[test]
    fn messages_read_and_write_the_protocol_s_field_numbers() {
        let floats: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        // ModelInferRequest{model_name 1, id 3, inputs 5: InferInputTensor{name 1, datatype 2,
        // shape 3 (packed), contents 5: InferTensorContents{fp32_contents 6 (packed)}}}.
        let input = [
            field(1, b"input__0"),
            field(2, b"FP32"),
            field(3, &[1, 2]),
            field(5, &field(6, &floats)),
        ]
        .concat();
        let wire = [field(1, b"m"), field(3, b"r-9"), field(5, &input)].concat();
        let r = ModelInferRequest::decode(wire.as_slice()).unwrap();
        assert_eq!((r.model_name.as_str(), r.id.as_str()), ("m", "r-9"));
        let t = &r.inputs[0];
        assert_eq!((t.name.as_str(), t.datatype.as_str()), ("input__0", "FP32"));
        assert_eq!(t.shape, vec![1, 2]);
        assert_eq!(t.contents.as_ref().unwrap().fp32_contents, vec![1.5, -2.0]);
        // The other typed fields: int_contents 2, int64_contents 3, uint_contents 4.
        let c = InferTensorContents::decode(
            [field(2, &[7]), field(3, &[8]), field(4, &[9])]
                .concat()
                .as_slice(),
        )
        .unwrap();
        assert_eq!(
            (c.int_contents, c.int64_contents, c.uint_contents),
            (vec![7], vec![8], vec![9])
        );
        // raw_input_contents 7.
        let raw = ModelInferRequest::decode(field(7, &floats).as_slice()).unwrap();
        assert_eq!(
            raw.raw_input_contents,
            vec![bytes::Bytes::from(floats.clone())]
        );
        // ModelInferResponse{model_name 1, model_version 2, id 3, outputs 5: InferOutputTensor{
        // name 1, datatype 2, shape 3}, raw_output_contents 6}: the exact bytes.
        let response = encode_infer("m", Some("r-9".into()), "o", vec![1, 2], &[1.5, -2.0]);
        let output = [field(1, b"o"), field(2, b"FP32"), field(3, &[1, 2])].concat();
        let expected = [
            field(1, b"m"),
            field(2, b"1"),
            field(3, b"r-9"),
            field(5, &output),
            field(6, &floats),
        ]
        .concat();
        assert_eq!(response.encode_to_vec(), expected);
        // Triton's ModelConfig{name 1, max_batch_size 4 (varint), input 5: {name 1, data_type 2,
        // dims 4}, output 6: {dims 3}, dynamic_batching 11: {max_queue_delay_microseconds 2}}.
        let config = ModelConfig {
            name: "m".into(),
            platform: String::new(),
            max_batch_size: 8,
            input: vec![ModelTensorConfig {
                name: "i".into(),
                data_type: TRITON_FP32,
                dims: vec![3],
            }],
            output: vec![ModelOutputConfig {
                name: String::new(),
                data_type: 0,
                dims: vec![10],
            }],
            dynamic_batching: Some(ModelDynamicBatching {
                max_queue_delay_microseconds: 500,
            }),
        };
        let expected = [
            field(1, b"m"),
            vec![4 << 3, 8],
            field(
                5,
                &[field(1, b"i"), vec![2 << 3, 11], field(4, &[3])].concat(),
            ),
            field(6, &field(3, &[10])),
            // 500 as a varint: 0xf4 0x03.
            field(11, &[2 << 3, 0xf4, 0x03]),
        ]
        .concat();
        assert_eq!(config.encode_to_vec(), expected);
    }

    #[test]
    fn outputs_go_back_as_raw_little_endian_bytes() {
        let r = encode_infer(
            "m",
            Some("r-1".into()),
            "output__0",
            vec![1, 2],
            &[1.5, -2.0],
        );
        assert_eq!(r.raw_output_contents, vec![le(&[1.5, -2.0])]);
        assert_eq!(r.outputs[0].shape, vec![1, 2]);
        assert_eq!((r.id.as_str(), r.model_version.as_str()), ("r-1", "1"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Whatever bytes arrive as a ModelInferRequest: refused as malformed, or decoded and then
        /// accepted or refused with a 4xx and why — never a panic.
        #[test]
        fn arbitrary_and_mutated_messages_never_panic_and_errors_are_4xx(
            arbitrary in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..6),
            cut in proptest::prelude::any::<usize>(),
            typed in proptest::prelude::any::<bool>(),
        ) {
            let values = [0.5f32; 12];
            let valid = if typed {
                request(vec![2, 3, 2], None, Some(values.to_vec()))
            } else {
                request(vec![2, 3, 2], Some(le(&values)), None)
            };
            let mut mutated = valid.encode_to_vec();
            for (pos, byte) in edits {
                let i = pos % mutated.len();
                mutated[i] = byte;
            }
            mutated.truncate(cut % (mutated.len() + 1));
            for bytes in [arbitrary, mutated] {
                if let Ok(r) = ModelInferRequest::decode(bytes.as_slice())
                    && let Err(e) = decode_infer(&r, &sig()) {
                        proptest::prop_assert!((400..500).contains(&e.status), "{}", e.status);
                        proptest::prop_assert!(!e.message.is_empty());
                    }
            }
        }
    }
}
