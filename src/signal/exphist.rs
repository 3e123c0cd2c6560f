//! An OTLP exponential histogram that records values as they come: it starts at the finest
//! scale (20) and halves its resolution whenever a value would need more than `max_size`
//! buckets, as the Collector's (and the SDKs') base-2 exponential aggregation does. Bucket `i`
//! at scale `s` holds the values in `(2^(i / 2^s), 2^((i + 1) / 2^s)]`: upper bound inclusive,
//! as the data model defines it, exact for powers of two.

/// The finest scale the data model's mapping functions are specified for.
pub const MAX_SCALE: i32 = 20;

/// Positive values' buckets; zero and negative values are the caller's (a duration is never
/// negative; zero goes to the zero count).
#[derive(Debug, Clone)]
pub struct ExpBuckets {
    scale: i32,
    /// Index of `counts[0]`; meaningless while `counts` is empty.
    offset: i32,
    counts: Vec<u64>,
    max_size: usize,
}

impl ExpBuckets {
    /// `max_size` below 2 is raised to 2: one bucket cannot hold two different powers of two.
    pub fn new(max_size: usize) -> Self {
        ExpBuckets {
            scale: MAX_SCALE,
            offset: 0,
            counts: Vec::new(),
            max_size: max_size.max(2),
        }
    }

    pub fn scale(&self) -> i32 {
        self.scale
    }

    /// The first bucket's index and the counts, as OTLP's `Buckets` carries them.
    pub fn buckets(&self) -> (i32, &[u64]) {
        (self.offset, &self.counts)
    }

    /// Counts one positive, finite value; anything else is ignored.
    pub fn record(&mut self, v: f64) {
        if !(v > 0.0 && v.is_finite()) {
            return;
        }
        let mut i = index(v, self.scale);
        if self.counts.is_empty() {
            self.offset = i;
            self.counts.push(1);
            return;
        }
        let lo = self.offset.min(i);
        let hi = (self.offset + self.counts.len() as i32 - 1).max(i);
        let mut shift = 0;
        while i64::from(hi >> shift) - i64::from(lo >> shift) + 1 > self.max_size as i64 {
            shift += 1;
        }
        if shift > 0 {
            self.downscale(shift);
            i >>= shift;
        }
        if i < self.offset {
            let grow = (self.offset - i) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = i;
        }
        let at = (i - self.offset) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] += 1;
    }

    /// Halves the resolution `shift` times: bucket `i` becomes `i >> shift`.
    fn downscale(&mut self, shift: i32) {
        let new_offset = self.offset >> shift;
        let mut merged: Vec<u64> = Vec::with_capacity(self.counts.len());
        for (k, n) in self.counts.iter().enumerate() {
            let at = (((self.offset + k as i32) >> shift) - new_offset) as usize;
            if at >= merged.len() {
                merged.resize(at + 1, 0);
            }
            merged[at] += n;
        }
        self.counts = merged;
        self.offset = new_offset;
        self.scale -= shift;
    }
}

/// The data model's mapping of a positive value to its bucket index at `scale`.
pub fn index(v: f64, scale: i32) -> i32 {
    let bits = v.to_bits();
    let raw_exp = ((bits >> 52) & 0x7ff) as i32;
    let mantissa = bits & ((1u64 << 52) - 1);
    // Subnormals are far below any duration; they share the smallest normal's bucket.
    let exp = if raw_exp == 0 { -1022 } else { raw_exp - 1023 };
    let power_of_two = mantissa == 0 || raw_exp == 0;
    if scale <= 0 {
        // Exactly 2^e is the upper bound of bucket e - 1.
        let e = if power_of_two { exp - 1 } else { exp };
        return e >> -scale;
    }
    if power_of_two {
        return (exp << scale) - 1;
    }
    // The logarithm is exact enough away from the boundaries, which the data model allows
    // ("may be off by one near boundaries"); powers of two, the common exact case, are above.
    let i = (v.log2() * f64::from(1u32 << scale)).floor();
    i as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_two_are_upper_bounds() {
        // 1 = 2^0 closes bucket -1 at every scale; 2 closes bucket 2^s - 1.
        assert_eq!(index(1.0, 0), -1);
        assert_eq!(index(1.0, 3), -1);
        assert_eq!(index(2.0, 3), 7);
        assert_eq!(index(0.5, 3), -9);
        assert_eq!(index(4.0, -1), 0); // 2^2: bucket 1 at scale 0, 0 at scale -1
        assert_eq!(index(4.1, -1), 1);
        // Just above a power of two opens the next bucket.
        assert_eq!(index(1.000_001, 3), 0);
        assert_eq!(index(3.0, 0), 1); // (2, 4]
        assert_eq!(index(3.0, 1), 3); // (2^1.5, 2^2] = (2.83, 4]
        assert_eq!(index(2.5, 1), 2); // (2, 2.83]
    }

    #[test]
    fn downscales_to_fit_max_size() {
        let mut h = ExpBuckets::new(10);
        h.record(0.5);
        assert_eq!(h.scale(), MAX_SCALE);
        h.record(2.0);
        // 0.5 = 2^-1 and 2 = 2^1 close buckets -2^s - 1 and 2^s - 1: 2^(s+1) + 1 buckets,
        // at most 10 at scale 2 (-5 and 3 after the shift: 9 buckets).
        assert_eq!(h.scale(), 2);
        let (offset, counts) = h.buckets();
        assert_eq!((offset, counts.len()), (-5, 9));
        assert_eq!(
            (counts[0], counts[8], counts.iter().sum::<u64>()),
            (1, 1, 2)
        );
        // A value inside the range lands in its bucket without another downscale.
        h.record(1.5); // (2^0.5, 2^0.75] at scale 2: index 2
        assert_eq!(h.scale(), 2);
        assert_eq!(h.buckets().1[(2 - offset) as usize], 1);
        // Zero, negatives, NaN and infinities are not bucketed.
        for v in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            h.record(v);
        }
        assert_eq!(h.buckets().1.iter().sum::<u64>(), 3);
    }

    #[test]
    fn every_value_falls_inside_its_bucket() {
        let mut h = ExpBuckets::new(160);
        let values: Vec<f64> = (1..2000).map(|i| f64::from(i) * 0.37).collect();
        for &v in &values {
            h.record(v);
        }
        assert_eq!(h.buckets().1.iter().sum::<u64>(), values.len() as u64);
        assert!(h.buckets().1.len() <= 160);
        let base = 2f64.powf(2f64.powi(-h.scale()));
        for &v in &values {
            let i = index(v, h.scale());
            let (lo, hi) = (base.powi(i), base.powi(i + 1));
            assert!(
                lo < v * (1.0 + 1e-12) && v <= hi * (1.0 + 1e-12),
                "{v} in ({lo}, {hi}]"
            );
        }
    }
}
