//! The batch's host-side input buffer. Each request's elements are copied once, straight into the
//! tensor the model reads (or, on CUDA, the tensor the GPU copies from) — not gathered into a `Vec`
//! and copied again into a new tensor per batch. On CUDA the buffer is pinned, so the host-to-device
//! copy is a direct DMA that can run asynchronously instead of staging through a driver bounce buffer.
//! One buffer per element type serves every batch size: a batch of `n` items is its first `n` rows.

use super::v2::{Datatype, TensorData};
use crate::model::catch_torch;
use greenbatch_crds::Dtype;
use tch::kind::Element;
use tch::{Device, Kind, Tensor};

#[derive(Default)]
pub struct Staging {
    /// (element kind, the buffer): the data kind is fixed per model, so there is at most one.
    buffer: Option<(Kind, Tensor)>,
}

/// The element kind requests of a model's declared dtype arrive as; `None` for dtypes the server
/// does not decode (which `v2::Datatype::from_dtype` decides, and start-up refuses).
pub fn request_kind(dtype: Dtype) -> Option<Kind> {
    Datatype::from_dtype(dtype).map(|d| match d {
        Datatype::Fp32 => Kind::Float,
        Datatype::Int64 => Kind::Int64,
        Datatype::Int32 => Kind::Int,
        Datatype::Uint8 => Kind::Uint8,
    })
}

/// The elements of one request, by type.
fn kind_of(data: &TensorData) -> Kind {
    match data {
        TensorData::F32(_) => Kind::Float,
        TensorData::I64(_) => Kind::Int64,
        TensorData::I32(_) => Kind::Int,
        TensorData::U8(_) => Kind::Uint8,
    }
}

/// Copies `parts` one after another into `dst` and zero-fills the rest (padding items). A part of
/// another element type (`None`) or parts that overflow `dst` are errors, not panics or shifted
/// rows: the caller sized `dst` and the decoder admits one datatype, so either is a bug.
fn fill<'a, T: Element + Copy + 'a>(
    dst: &mut [T],
    parts: impl Iterator<Item = Option<&'a [T]>>,
) -> Result<(), String> {
    let mut offset = 0;
    for p in parts {
        let p = p.ok_or("requests of different element types in one batch")?;
        let slot = dst
            .get_mut(offset..offset + p.len())
            .ok_or("the requests do not fit the batch shape")?;
        slot.copy_from_slice(p);
        offset += p.len();
    }
    dst[offset..].fill(T::ZERO);
    Ok(())
}

impl Staging {
    /// Makes sure a buffer of `elements` elements of `kind` exists (pinned for a CUDA `device`), so
    /// the largest batch does not allocate under live traffic.
    pub fn reserve(&mut self, kind: Kind, elements: usize, device: Device) -> Result<(), String> {
        let fits = matches!(&self.buffer, Some((k, t)) if *k == kind && t.numel() >= elements);
        if !fits {
            let size = i64::try_from(elements).map_err(|_| "batch too large".to_string())?;
            let t = catch_torch(|| {
                let t = Tensor::empty([size], (kind, Device::Cpu));
                if device.is_cuda() {
                    t.pin_memory(device)
                } else {
                    t
                }
            })
            .map_err(|e| format!("cannot allocate the batch buffer: {e}"))?;
            self.buffer = Some((kind, t));
        }
        Ok(())
    }

    /// The host tensor of shape `shape` (leading dimension: the run size) holding every request's
    /// data in order, then zeros. `device` decides pinning. The returned tensor is a view of the
    /// reused buffer and must be consumed within the batch that asked for it: its device copy
    /// complete and its output read before the next call (the executor runs one batch at a time and
    /// synchronises each).
    pub fn batch<'a>(
        &mut self,
        data: impl Iterator<Item = &'a TensorData> + Clone,
        shape: &[i64],
        device: Device,
    ) -> Result<Tensor, String> {
        let first = data.clone().next().ok_or("an empty batch")?;
        let kind = kind_of(first);
        let total: i64 = shape.iter().product();
        let total = usize::try_from(total).map_err(|_| format!("bad batch shape {shape:?}"))?;
        // Grows to the largest batch seen (at most the max batch size), then stays.
        self.reserve(kind, total, device)?;
        let (_, buffer) = self.buffer.as_ref().ok_or("no staging buffer")?;
        debug_assert!(buffer.is_contiguous() && buffer.device() == Device::Cpu);
        macro_rules! fill_as {
            ($variant:ident, $t:ty) => {{
                // SAFETY: `buffer` is a contiguous CPU tensor of at least `total` elements of
                // `$t` (`reserve` made it of this kind), owned by `self`, and no other view of it is
                // in use: the previous batch's copy and output were finished before this call.
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(buffer.data_ptr() as *mut $t, total) };
                fill(
                    dst,
                    data.map(|d| match d {
                        TensorData::$variant(v) => Some(v.as_slice()),
                        _ => None,
                    }),
                )
            }};
        }
        match kind {
            Kind::Float => fill_as!(F32, f32),
            Kind::Int64 => fill_as!(I64, i64),
            Kind::Int => fill_as!(I32, i32),
            _ => fill_as!(U8, u8),
        }
        .map_err(|e| format!("{e} {shape:?}"))?;
        let total = total as i64;
        catch_torch(|| buffer.narrow(0, 0, total).view(shape)).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_order_then_zeros_and_the_buffer_is_reused() {
        let mut s = Staging::default();
        let a = TensorData::F32(vec![1.0, 2.0]);
        let b = TensorData::F32(vec![3.0, 4.0]);
        let t = s.batch([&a, &b].into_iter(), &[3, 2], Device::Cpu).unwrap();
        assert_eq!(t.size(), vec![3, 2]);
        assert_eq!(
            Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(),
            vec![1.0, 2.0, 3.0, 4.0, 0.0, 0.0]
        );
        let ptr = t.data_ptr();
        drop(t);
        // A smaller batch reuses the same memory, and stale rows are zeroed.
        let t = s.batch([&b].into_iter(), &[2, 2], Device::Cpu).unwrap();
        assert_eq!(t.data_ptr(), ptr);
        assert_eq!(
            Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(),
            vec![3.0, 4.0, 0.0, 0.0]
        );
        // Another element type gets its own buffer.
        let c = TensorData::I64(vec![7]);
        let t = s.batch([&c].into_iter(), &[1, 1], Device::Cpu).unwrap();
        assert_eq!(Vec::<i64>::try_from(t.flatten(0, -1)).unwrap(), vec![7]);
    }

    #[test]
    fn overflowing_or_mixed_requests_are_an_error_not_a_panic_or_shifted_rows() {
        let mut s = Staging::default();
        let a = TensorData::F32(vec![1.0; 5]);
        let err = s.batch([&a].into_iter(), &[2, 2], Device::Cpu).unwrap_err();
        assert!(err.contains("do not fit"), "{err}");
        assert!(s.batch(std::iter::empty(), &[1, 2], Device::Cpu).is_err());
        let (f, i) = (TensorData::F32(vec![1.0]), TensorData::I64(vec![2]));
        let err = s
            .batch([&f, &i].into_iter(), &[2, 1], Device::Cpu)
            .unwrap_err();
        assert!(err.contains("different element types"), "{err}");
    }

    #[test]
    fn a_reserved_buffer_serves_every_smaller_batch_without_reallocating() {
        let mut s = Staging::default();
        s.reserve(Kind::Float, 8, Device::Cpu).unwrap();
        let a = TensorData::F32(vec![5.0; 4]);
        let p1 = s
            .batch([&a].into_iter(), &[2, 2], Device::Cpu)
            .unwrap()
            .data_ptr();
        let p2 = s
            .batch([&a].into_iter(), &[4, 2], Device::Cpu)
            .unwrap()
            .data_ptr();
        assert_eq!(p1, p2);
    }
}
