//! An input's JSON `data` (flat or nested) read straight into the model's element type, as the
//! parser meets each number: no tree of `serde_json::Value`s (32 bytes for each 2-byte `0,`, a
//! 64 MiB body ~1 GiB), no flattened copy, and no more values kept than the shape declares.

use crate::serve::tensor::{Datatype, TensorData, V2Error};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// Most levels of arrays `data` may nest.
const MAX_DEPTH: usize = 16;

/// Reads `data` as `elements` values of `dt` for input `name` of `shape`; a value of another
/// type, a non-finite FP32, nesting deeper than 16 levels or another element count is a 400
/// naming it.
pub fn read(
    data: &RawValue,
    dt: Datatype,
    (name, shape, elements): (&str, &[i64], u64),
) -> Result<TensorData, V2Error> {
    let expected = usize::try_from(elements).unwrap_or(usize::MAX);
    // Each value takes at least two bytes of JSON (`0,`): room for what the text can hold, not
    // for what a shape merely claims.
    let room = expected.min(data.get().len() / 2 + 1);
    let mut reader = Reader {
        values: match dt {
            Datatype::Fp32 => TensorData::F32(Vec::with_capacity(room)),
            Datatype::Int64 => TensorData::I64(Vec::with_capacity(room)),
            Datatype::Int32 => TensorData::I32(Vec::with_capacity(room)),
            Datatype::Uint8 => TensorData::U8(Vec::with_capacity(room)),
        },
        dt,
        name,
        expected,
        seen: 0,
        problem: None,
    };
    let mut parser = serde_json::Deserializer::from_str(data.get());
    let parsed = Level {
        reader: &mut reader,
        depth: 0,
    }
    .deserialize(&mut parser);
    if let Some(problem) = reader.problem {
        return Err(problem);
    }
    parsed.map_err(|e| V2Error::bad(format!("input {name:?}: malformed `data`: {e}")))?;
    if reader.seen != expected {
        return Err(V2Error::bad(format!(
            "input {name:?}: shape {shape:?} needs {elements} elements, got {}",
            reader.seen
        )));
    }
    Ok(reader.values)
}

/// A number as the parser gave it.
#[derive(Clone, Copy)]
enum Number {
    Float(f64),
    Signed(i64),
    Unsigned(u64),
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Float(x) => write!(f, "{x}"),
            Number::Signed(x) => write!(f, "{x}"),
            Number::Unsigned(x) => write!(f, "{x}"),
        }
    }
}

struct Reader<'a> {
    values: TensorData,
    dt: Datatype,
    name: &'a str,
    expected: usize,
    /// Values met so far (past `expected` they are only counted).
    seen: usize,
    /// Why reading stopped, when it was the request's fault (the parser's own error then only
    /// carries the stop).
    problem: Option<V2Error>,
}

impl Reader<'_> {
    fn stop<E: de::Error>(&mut self, problem: V2Error) -> E {
        self.problem = Some(problem);
        E::custom("stopped")
    }

    fn not_valid<E: de::Error>(&mut self, what: &dyn fmt::Display) -> E {
        let message = format!(
            "input {:?}: element {} ({what}) is not a valid {}",
            self.name,
            self.seen,
            self.dt.name()
        );
        self.stop(V2Error::bad(message))
    }

    fn push<E: de::Error>(&mut self, n: Number) -> Result<(), E> {
        if self.seen >= self.expected {
            // Counted for the message, not kept.
            self.seen += 1;
            return Ok(());
        }
        let kept = match (&mut self.values, n) {
            (TensorData::F32(v), Number::Float(x)) => push_finite(v, x as f32),
            (TensorData::F32(v), Number::Signed(x)) => push_finite(v, x as f32),
            (TensorData::F32(v), Number::Unsigned(x)) => push_finite(v, x as f32),
            (TensorData::I64(v), Number::Signed(x)) => push_some(v, Some(x)),
            (TensorData::I64(v), Number::Unsigned(x)) => push_some(v, i64::try_from(x).ok()),
            (TensorData::I32(v), Number::Signed(x)) => push_some(v, i32::try_from(x).ok()),
            (TensorData::I32(v), Number::Unsigned(x)) => push_some(v, i32::try_from(x).ok()),
            (TensorData::U8(v), Number::Signed(x)) => push_some(v, u8::try_from(x).ok()),
            (TensorData::U8(v), Number::Unsigned(x)) => push_some(v, u8::try_from(x).ok()),
            // A fraction is no integer.
            (_, Number::Float(_)) => false,
        };
        if !kept {
            return Err(self.not_valid(&n));
        }
        self.seen += 1;
        Ok(())
    }
}

fn push_finite(v: &mut Vec<f32>, x: f32) -> bool {
    x.is_finite() && push_some(v, Some(x))
}

fn push_some<T>(v: &mut Vec<T>, x: Option<T>) -> bool {
    x.map(|x| v.push(x)).is_some()
}

/// One value of `data` at `depth` (0: `data` itself): an array read value by value, or a number.
struct Level<'r, 'a> {
    reader: &'r mut Reader<'a>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Level<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(self
                .reader
                .stop(V2Error::bad("`data` is nested deeper than 16 levels")));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or an array of them")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.depth + 1;
        while seq
            .next_element_seed(Level {
                reader: &mut *self.reader,
                depth,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<(), E> {
        self.reader.push(Number::Float(x))
    }

    fn visit_i64<E: de::Error>(self, x: i64) -> Result<(), E> {
        self.reader.push(Number::Signed(x))
    }

    fn visit_u64<E: de::Error>(self, x: u64) -> Result<(), E> {
        self.reader.push(Number::Unsigned(x))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        Err(self.reader.not_valid(&format_args!("{s:?}")))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        Err(self.reader.not_valid(&b))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.reader.not_valid(&"null"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.reader.not_valid(&"an object"))
    }
}
