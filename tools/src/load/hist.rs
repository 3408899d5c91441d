//! The latency histogram and the forms other tools read: HdrHistogram's
//! V2 compressed encoding in base64 (what its log tools decode), the
//! `.hgrm` percentile distribution (wrk2's `--latency` layout, what the
//! HdrHistogram plotter and hdr-plot read), and the percentile spectrum
//! the charts draw.

use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

/// The slowest latency a histogram holds, in nanoseconds: an hour.
const HIGHEST_NANOS: u64 = 3_600_000_000_000;

/// Significant digits kept: 0.1% resolution at every magnitude.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Percentile ticks per half distance to 100%, as HdrHistogram's own
/// percentile output and wrk2 use.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// An empty latency histogram in nanoseconds, from 1 ns to an hour at
/// three significant digits. Every histogram of a run has these bounds,
/// so any two can be added.
pub fn new_latency() -> Histogram<u64> {
    // The bounds are constants that the crate accepts (1 <= low,
    // high >= 2 * low, digits <= 5), so this cannot fail.
    Histogram::new_with_bounds(1, HIGHEST_NANOS, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// `h` in HdrHistogram's V2 compressed format, base64-encoded (the form of
/// HdrHistogram's interval logs, without the log line around it).
pub fn encode_v2(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Writing into a vector cannot fail, and a histogram of our bounds
    // always serialises.
    let _ = V2DeflateSerializer::new().serialize(h, &mut bytes);
    STANDARD.encode(bytes)
}

/// Decodes what [`encode_v2`] wrote, or a V2 histogram from another tool.
pub fn decode_v2(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("not an HdrHistogram V2 histogram: {e}"))
}

/// One point of the percentile spectrum: the share of requests answered
/// within a latency.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tick {
    /// Latency in microseconds.
    pub value_us: f64,
    /// The share of requests at or below it, 0 to 1.
    pub quantile: f64,
    /// Requests at or below it.
    pub total: u64,
}

/// The percentile spectrum of `h` (nanoseconds): HdrHistogram's percentile
/// iteration, five ticks per half distance to 100%, ending at 100%.
pub fn spectrum(h: &Histogram<u64>) -> Vec<Tick> {
    let mut total = 0;
    h.iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|v| {
            total += v.count_since_last_iteration();
            Tick {
                value_us: v.value_iterated_to() as f64 / 1000.0,
                quantile: v.quantile_iterated_to(),
                total,
            }
        })
        .collect()
}

/// The `.hgrm` text of `h` (nanoseconds), values in microseconds: the
/// layout of HdrHistogram's `outputPercentileDistribution` and of wrk2's
/// `--latency` spectrum, with a first comment line naming the unit.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let digits = usize::from(h.sigfig());
    let us = |nanos: f64| nanos / 1000.0;
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(
        out,
        "#[linepool load: latency in microseconds (us), 1/(1-Percentile) as wrk2 and HdrHistogram print it]"
    );
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for tick in spectrum(h) {
        if tick.quantile < 1.0 {
            let _ = writeln!(
                out,
                "{:>12.digits$} {:>2.12} {:>10} {:>14.2}",
                tick.value_us,
                tick.quantile,
                tick.total,
                1.0 / (1.0 - tick.quantile)
            );
        } else {
            let _ = writeln!(
                out,
                "{:>12.digits$} {:>2.12} {:>10}",
                tick.value_us, tick.quantile, tick.total
            );
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (us(h.mean()), us(h.stdev()), us(h.max() as f64))
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        h.len()
    );
    // HdrHistogram's sub-bucket count: the power of two that holds
    // 2 * 10^digits values at single-unit resolution.
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {sub_buckets:>12}]",
        h.buckets()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1,000 requests at 1, 2, ..., 1,000 microseconds.
    fn one_to_a_thousand_us() -> Histogram<u64> {
        let mut h = new_latency();
        for us in 1..=1000u64 {
            h.record(us * 1000).expect("in range");
        }
        h
    }

    /// A known set of latencies gives a known `.hgrm`: the header, the
    /// ticks (five per half distance to 100%), the last line without its
    /// 1/(1-Percentile), and the footer.
    #[test]
    fn known_latencies_give_a_known_hgrm() {
        let text = hgrm(&one_to_a_thousand_us());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "#[linepool load: latency in microseconds (us), 1/(1-Percentile) as wrk2 and HdrHistogram print it]"
        );
        assert_eq!(
            lines[1],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[2], "");
        assert_eq!(
            &lines[3..8],
            [
                "       1.000 0.000000000000          1           1.00",
                "     100.031 0.100000000000        100           1.11",
                "     200.063 0.200000000000        200           1.25",
                "     301.055 0.300000000000        301           1.43",
                "     400.127 0.400000000000        400           1.67",
            ]
        );
        assert_eq!(
            lines[lines.len() - 5],
            "    1000.447 0.999023437500       1000        1024.00"
        );
        assert_eq!(
            lines[lines.len() - 4],
            "    1000.447 1.000000000000       1000"
        );
        assert_eq!(
            &lines[lines.len() - 3..],
            [
                "#[Mean    =      500.505, StdDeviation   =      288.676]",
                "#[Max     =     1000.447, Total count    =         1000]",
                "#[Buckets =           32, SubBuckets     =         2048]",
            ]
        );
    }

    /// The base64 V2 encoding decodes, with HdrHistogram's own decoder, to
    /// the very histogram that was encoded.
    #[test]
    fn v2_base64_round_trips_through_the_decoder() {
        let h = one_to_a_thousand_us();
        let text = encode_v2(&h);
        // The V2 compressed cookie, 0x1c849304, in base64.
        assert!(text.starts_with("HISTFA"), "{text}");
        let bytes = STANDARD.decode(&text).expect("base64");
        let back: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .expect("decodes");
        assert_eq!(back, h);
        assert_eq!(decode_v2(&text).expect("decodes"), h);
        assert!(decode_v2("not a histogram").is_err());
        assert!(decode_v2(&STANDARD.encode(b"plain bytes")).is_err());
    }

    /// The spectrum ends at 100% with the slowest value, every request
    /// counted.
    #[test]
    fn the_spectrum_ends_at_the_slowest_request() {
        let ticks = spectrum(&one_to_a_thousand_us());
        let last = ticks.last().expect("ticks");
        assert_eq!(last.quantile, 1.0);
        assert_eq!(last.total, 1000);
        assert!((last.value_us - 1000.447).abs() < 1e-9);
        assert!(ticks.windows(2).all(|w| w[0].quantile <= w[1].quantile));
        assert!(spectrum(&new_latency()).is_empty());
    }
}
