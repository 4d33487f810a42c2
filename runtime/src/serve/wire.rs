//! A read-only walk over a protobuf message's fields as they lie on the wire, without decoding
//! them into structures: enough to count a message's repeated fields before a decoder allocates
//! for them (prost builds a 200-byte tensor for a 2-byte empty entry, an 8-byte integer for each
//! 1-byte varint).

/// One field's value as encoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64,
    /// Bytes, a string, an embedded message or a packed repeated field.
    Bytes(&'a [u8]),
    Fixed32,
    /// A (proto2) group, skipped whole as decoders skip an unknown one.
    Group,
}

/// Most groups nested in one another that a walk follows (prost's recursion limit is 100).
const MAX_GROUP_DEPTH: usize = 100;

/// The message is not well-formed protobuf (the decoder says how, in its own words).
#[derive(Debug, PartialEq)]
pub struct Malformed;

/// The fields of `message` in wire order, as `(field number, value)`; stops at the first
/// malformed one.
pub fn fields(message: &[u8]) -> impl Iterator<Item = Result<(u32, Value<'_>), Malformed>> {
    let mut rest = message;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        let field = next_field(&mut rest);
        failed = field.is_err();
        Some(field)
    })
}

fn next_field<'a>(rest: &mut &'a [u8]) -> Result<(u32, Value<'a>), Malformed> {
    let key = varint(rest)?;
    let number = u32::try_from(key >> 3).map_err(|_| Malformed)?;
    if key & 7 == 3 {
        skip_group(rest, number, 1)?;
        return Ok((number, Value::Group));
    }
    let value = match key & 7 {
        0 => Value::Varint(varint(rest)?),
        1 => {
            take(rest, 8)?;
            Value::Fixed64
        }
        2 => {
            let len = usize::try_from(varint(rest)?).map_err(|_| Malformed)?;
            Value::Bytes(take(rest, len)?)
        }
        5 => {
            take(rest, 4)?;
            Value::Fixed32
        }
        // An end of group outside one; 6 and 7 are not wire types.
        _ => return Err(Malformed),
    };
    Ok((number, value))
}

/// Past the fields of group `number` (its start read), to and through its end.
fn skip_group(rest: &mut &[u8], number: u32, depth: usize) -> Result<(), Malformed> {
    if depth > MAX_GROUP_DEPTH {
        return Err(Malformed);
    }
    loop {
        let key = varint(rest)?;
        let inner = u32::try_from(key >> 3).map_err(|_| Malformed)?;
        match key & 7 {
            0 => {
                varint(rest)?;
            }
            1 => {
                take(rest, 8)?;
            }
            2 => {
                let len = usize::try_from(varint(rest)?).map_err(|_| Malformed)?;
                take(rest, len)?;
            }
            3 => skip_group(rest, inner, depth + 1)?,
            4 if inner == number => return Ok(()),
            5 => {
                take(rest, 4)?;
            }
            _ => return Err(Malformed),
        }
    }
}

fn take<'a>(rest: &mut &'a [u8], len: usize) -> Result<&'a [u8], Malformed> {
    if rest.len() < len {
        return Err(Malformed);
    }
    let (taken, after) = rest.split_at(len);
    *rest = after;
    Ok(taken)
}

fn varint(rest: &mut &[u8]) -> Result<u64, Malformed> {
    let mut value = 0u64;
    for (i, byte) in rest.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *rest = &rest[i + 1..];
            return Ok(value);
        }
    }
    Err(Malformed)
}

/// How many values a repeated scalar field's occurrence holds: a packed run of varints counts
/// one per final byte, a packed run of fixed-size values one per `fixed_size` bytes (0 for
/// varints), an unpacked occurrence one.
pub fn values_in(value: Value<'_>, fixed_size: usize) -> usize {
    match value {
        Value::Bytes(b) if fixed_size == 0 => b.iter().filter(|byte| *byte & 0x80 == 0).count(),
        Value::Bytes(b) => b.len() / fixed_size,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_every_wire_type_and_stops_at_a_truncated_field() {
        // 1: varint 300; 2: bytes "ab"; 3: fixed32; 4: fixed64.
        let message = [
            0x08, 0xac, 0x02, 0x12, 2, b'a', b'b', 0x1d, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let read: Vec<_> = fields(&message).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            read,
            vec![
                (1, Value::Varint(300)),
                (2, Value::Bytes(b"ab")),
                (3, Value::Fixed32),
                (4, Value::Fixed64)
            ]
        );
        // Bytes running past the end, a varint without its last byte, a group never ended, an
        // end of group outside one.
        for bad in [&[0x12, 5, b'a'][..], &[0x08, 0x80], &[0x0b], &[0x0c]] {
            let read: Vec<_> = fields(bad).collect();
            assert_eq!(read.last(), Some(&Err(Malformed)), "{bad:?}");
        }
        // A group (field 1, holding a varint and a group of its own) is skipped whole, as
        // decoders skip it.
        let grouped = [0x0b, 0x10, 0x01, 0x1b, 0x1c, 0x0c, 0x08, 0x07];
        let read: Vec<_> = fields(&grouped).collect::<Result<_, _>>().unwrap();
        assert_eq!(read, vec![(1, Value::Group), (1, Value::Varint(7))]);
    }

    #[test]
    fn counts_packed_and_unpacked_values() {
        // Packed varints 1, 300, 2: three values in four bytes.
        assert_eq!(values_in(Value::Bytes(&[1, 0xac, 0x02, 2]), 0), 3);
        assert_eq!(values_in(Value::Bytes(&[0; 12]), 4), 3);
        assert_eq!(values_in(Value::Varint(7), 0), 1);
        assert_eq!(values_in(Value::Fixed32, 4), 1);
    }
}
