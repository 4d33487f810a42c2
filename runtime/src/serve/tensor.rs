//! The v2 protocol's types shared by its decoders (JSON and binary over HTTP, gRPC) and the model
//! thread: the element types the server accepts, a tensor's values, the served model's
//! signature, and a refusal with its HTTP status.

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
    /// Bytes per element.
    pub fn size(self) -> usize {
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

impl Signature {
    /// The refusal of a request carrying `count` inputs: the model takes one.
    pub fn wrong_input_count(&self, count: usize) -> V2Error {
        V2Error::bad(format!(
            "the model takes 1 input ({:?}), got {count}",
            self.input_name
        ))
    }
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
