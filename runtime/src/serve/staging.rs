//! The batch's host-side input buffer. Each request's elements are copied once, straight into the
//! tensor the model reads (or, on CUDA, the tensor the GPU copies from) — not gathered into a `Vec`
//! and copied again into a new tensor per batch. On CUDA the buffer is pinned, so the host-to-device
//! copy is a direct DMA that can run asynchronously instead of staging through a driver bounce buffer.
//! One buffer per element type serves every batch size: a batch of `n` items is its first `n` rows.

use super::v2::TensorData;
use tch::kind::Element;
use tch::{Device, Kind, Tensor};

#[derive(Default)]
pub struct Staging {
    /// (element kind, the buffer): the data kind is fixed per model, so there is at most one.
    buffer: Option<(Kind, Tensor)>,
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

/// Copies `parts` one after another into `dst` and zero-fills the rest (padding items). Returns
/// false, copying nothing more, if the parts do not fit — the caller sized `dst`, so that is a bug,
/// reported as a failed batch rather than a panic in the executor.
fn fill<'a, T: Element + Copy + 'a>(dst: &mut [T], parts: impl Iterator<Item = &'a [T]>) -> bool {
    let mut offset = 0;
    for p in parts {
        let Some(slot) = dst.get_mut(offset..offset + p.len()) else {
            return false;
        };
        slot.copy_from_slice(p);
        offset += p.len();
    }
    dst[offset..].fill(T::ZERO);
    true
}

impl Staging {
    /// The host tensor of shape `shape` (leading dimension: the run size) holding every request's
    /// data in order, then zeros. `device` decides pinning. The returned tensor is a view of the
    /// reused buffer: the caller must be done with it (its device copy complete, its output read)
    /// before the next call — the executor runs one batch at a time and synchronises each.
    pub fn batch<'a>(
        &mut self,
        data: impl Iterator<Item = &'a TensorData> + Clone,
        shape: &[i64],
        device: Device,
    ) -> Result<Tensor, String> {
        let Some(first) = data.clone().next() else {
            return Err("an empty batch".into());
        };
        let kind = kind_of(first);
        let total: i64 = shape.iter().product();
        let total = usize::try_from(total).map_err(|_| format!("bad batch shape {shape:?}"))?;
        let reusable = matches!(&self.buffer, Some((k, t)) if *k == kind && t.numel() >= total);
        if !reusable {
            // Grows to the largest batch seen (at most the max batch size), then stays.
            let t = Tensor::empty([total as i64], (kind, Device::Cpu));
            let t = if device.is_cuda() {
                t.pin_memory(device)
            } else {
                t
            };
            self.buffer = Some((kind, t));
        }
        let (_, buffer) = self.buffer.as_ref().ok_or("no staging buffer")?;
        debug_assert!(buffer.is_contiguous() && buffer.device() == Device::Cpu);
        macro_rules! fill_as {
            ($variant:ident, $t:ty) => {{
                // SAFETY: `buffer` is a contiguous CPU tensor of at least `total` elements of
                // `$t` (its kind was checked above), owned by `self`, and no other view of it is
                // in use: the previous batch's copy and output were finished before this call.
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(buffer.data_ptr() as *mut $t, total) };
                fill(
                    dst,
                    data.filter_map(|d| match d {
                        TensorData::$variant(v) => Some(v.as_slice()),
                        _ => None,
                    }),
                )
            }};
        }
        let fitted = match kind {
            Kind::Float => fill_as!(F32, f32),
            Kind::Int64 => fill_as!(I64, i64),
            Kind::Int => fill_as!(I32, i32),
            _ => fill_as!(U8, u8),
        };
        if !fitted {
            return Err(format!("the requests do not fit the batch shape {shape:?}"));
        }
        Ok(buffer.narrow(0, 0, total as i64).view(shape))
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
    fn requests_that_overflow_the_shape_are_an_error_not_a_panic() {
        let mut s = Staging::default();
        let a = TensorData::F32(vec![1.0; 5]);
        let err = s.batch([&a].into_iter(), &[2, 2], Device::Cpu).unwrap_err();
        assert!(err.contains("do not fit"), "{err}");
        assert!(s.batch(std::iter::empty(), &[1, 2], Device::Cpu).is_err());
    }
}
