//! PASTIS metadata: calendar dates (spec §1.5), `metadata.geojson` (§1.4) and `NORM_S2_patch.json` (§1.6).
//!
//! Dates are plain proleptic-Gregorian calendar arithmetic (what Python's `datetime` does): a day count from
//! 1970-01-01, so `(date - reference).days` is a subtraction. No time zones, no time of day.
//!
//! Every error names the file and, for the geojson, the feature (index and ID_PATCH) and the property at fault.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use crate::engine::error::{Error, Result};

/// The day offsets the original loader can represent: its date table has one column per day in
/// `[-200, 599]` (`np.array(range(-200, 600))`).
pub const DATE_RANGE: std::ops::RangeInclusive<i64> = -200..=599;

/// A calendar date (proleptic Gregorian, years 1..=9999 as Python's `datetime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year, 1..=9999.
    pub year: i32,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of the month, 1..=28/29/30/31.
    pub day: u32,
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

impl Date {
    /// The date `year-month-day`, or `None` when it does not exist (Python's `datetime` range: years 1..=9999).
    pub fn new(year: i32, month: u32, day: u32) -> Option<Date> {
        let ok = (1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month);
        ok.then_some(Date { year, month, day })
    }

    /// Parses `YYYY-MM-DD` as the original does (`datetime(*map(int, s.split("-")))`): three `-`-separated
    /// decimal integers (so `2018-9-1` is accepted too).
    pub fn parse(s: &str) -> Result<Date> {
        let bad = |why: &str| {
            Error::Invalid(format!(
                "date {s:?}: {why} (expected YYYY-MM-DD, e.g. 2018-09-01)"
            ))
        };
        let parts: Vec<&str> = s.trim().split('-').collect();
        if parts.len() != 3 {
            return Err(bad("not three '-'-separated numbers"));
        }
        let mut nums = [0i64; 3];
        for (n, p) in nums.iter_mut().zip(&parts) {
            let p = p.trim();
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("not a number"));
            }
            *n = p.parse().map_err(|_| bad("not a number"))?;
        }
        let (y, m, d) = (nums[0], nums[1], nums[2]);
        if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return Err(bad("no such day"));
        }
        Date::new(y as i32, m as u32, d as u32).ok_or_else(|| bad("no such day"))
    }

    /// Parses an acquisition date written as the integer `YYYYMMDD` (8 decimal digits), or `None`.
    pub fn from_yyyymmdd(v: u64) -> Option<Date> {
        if !(10_000_000..=99_999_999).contains(&v) {
            return None;
        }
        Date::new(
            (v / 10_000) as i32,
            (v / 100 % 100) as u32,
            (v % 100) as u32,
        )
    }

    /// Days since 1970-01-01 (negative before), proleptic Gregorian.
    pub fn days_since_epoch(self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let y = self.year as i64 - if self.month <= 2 { 1 } else { 0 };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = self.month as i64;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + self.day as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// `(self - other).days` in Python: the signed number of calendar days from `other` to `self`.
    pub fn days_since(self, other: Date) -> i64 {
        self.days_since_epoch() - other.days_since_epoch()
    }

    /// The date `days` calendar days after `self` (before when negative): `self + timedelta(days)` in Python,
    /// the inverse of [`Date::days_since`]. `None` outside years 1..=9999.
    pub fn plus_days(self, days: i64) -> Option<Date> {
        // Howard Hinnant's civil_from_days.
        let z = self.days_since_epoch() + days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date::new(i32::try_from(year).ok()?, month, day)
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// One patch of `metadata.geojson`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PatchMeta {
    /// ID_PATCH.
    pub id: u64,
    /// Fold, 1..=5.
    pub fold: usize,
    /// Distinct day offsets from the reference date, ascending (what the original's date table yields).
    pub dates: Vec<i64>,
    /// How many dates `dates-S2` listed (more than `dates.len()` when two share a day).
    pub listed: usize,
}

fn prop_err(
    path: &Path,
    index: usize,
    id: Option<u64>,
    prop: &str,
    msg: impl std::fmt::Display,
) -> Error {
    let who = match id {
        Some(id) => format!("feature {index} (ID_PATCH {id})"),
        None => format!("feature {index}"),
    };
    Error::format(path, format!("{who}: property \"{prop}\" {msg}"))
}

/// A non-negative integer property: a JSON integer, an integral float (`astype(int)` of a float column) or a
/// string of decimal digits.
fn as_index(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15)
                .map(|f| f as u64)
        }),
        Value::String(s)
            if !s.is_empty() && s.len() < 16 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

/// Reads `metadata.geojson`: every feature's ID_PATCH, Fold and `dates-S2` (object or JSON-encoded string),
/// the dates turned into ascending distinct day offsets from `ref_date`. Returned sorted by ID_PATCH.
pub(crate) fn read_metadata(path: &Path, ref_date: Date) -> Result<Vec<PatchMeta>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let root: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    let features = root
        .get("features")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Error::format(
                path,
                "not a GeoJSON FeatureCollection: no \"features\" array",
            )
        })?;
    let mut out = Vec::with_capacity(features.len());
    let mut seen = HashSet::new();
    for (index, feature) in features.iter().enumerate() {
        let props = feature
            .get("properties")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                Error::format(path, format!("feature {index}: no \"properties\" object"))
            })?;
        let get = |name: &str| {
            props
                .get(name)
                .filter(|v| !v.is_null())
                .ok_or_else(|| prop_err(path, index, None, name, "is missing"))
        };
        let id_v = get("ID_PATCH")?;
        let id = as_index(id_v).ok_or_else(|| {
            prop_err(
                path,
                index,
                None,
                "ID_PATCH",
                format!("is {id_v}, not a non-negative integer"),
            )
        })?;
        if !seen.insert(id) {
            return Err(prop_err(
                path,
                index,
                Some(id),
                "ID_PATCH",
                "is a duplicate: another feature has the same id",
            ));
        }
        let fold_v =
            get("Fold").map_err(|_| prop_err(path, index, Some(id), "Fold", "is missing"))?;
        let fold = as_index(fold_v)
            .filter(|f| (1..=5).contains(f))
            .ok_or_else(|| {
                prop_err(
                    path,
                    index,
                    Some(id),
                    "Fold",
                    format!("is {fold_v}, not a PASTIS fold 1..=5"),
                )
            })? as usize;
        let dates_v = get("dates-S2")
            .map_err(|_| prop_err(path, index, Some(id), "dates-S2", "is missing"))?;
        let parsed;
        let dates_obj = match dates_v {
            Value::Object(o) => o,
            Value::String(s) => {
                parsed = serde_json::from_str::<Value>(s).map_err(|e| {
                    prop_err(
                        path,
                        index,
                        Some(id),
                        "dates-S2",
                        format!("is a string that is not valid JSON: {e}"),
                    )
                })?;
                parsed.as_object().ok_or_else(|| {
                    prop_err(
                        path,
                        index,
                        Some(id),
                        "dates-S2",
                        "is a JSON string that does not hold an object",
                    )
                })?
            }
            other => {
                return Err(prop_err(
                    path,
                    index,
                    Some(id),
                    "dates-S2",
                    format!(
                    "is {other}, not an object {{\"0\": YYYYMMDD, ...}} or a JSON string of one"
                ),
                ))
            }
        };
        if dates_obj.is_empty() {
            return Err(prop_err(
                path,
                index,
                Some(id),
                "dates-S2",
                "is empty: the patch has no acquisition",
            ));
        }
        let mut dates = Vec::with_capacity(dates_obj.len());
        for (key, v) in dates_obj {
            let raw = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) => {
                    s.parse().ok()
                }
                _ => None,
            };
            let date = raw.and_then(Date::from_yyyymmdd).ok_or_else(|| {
                prop_err(
                    path,
                    index,
                    Some(id),
                    "dates-S2",
                    format!("entry \"{key}\" is {v}, not a date YYYYMMDD"),
                )
            })?;
            let off = date.days_since(ref_date);
            if !DATE_RANGE.contains(&off) {
                return Err(prop_err(
                    path,
                    index,
                    Some(id),
                    "dates-S2",
                    format!(
                        "entry \"{key}\" ({date}) is {off} days from the reference date {ref_date}; the original \
                         loader only represents offsets in [-200, 599]"
                    ),
                ));
            }
            dates.push(off);
        }
        let listed = dates.len();
        dates.sort_unstable();
        dates.dedup();
        out.push(PatchMeta {
            id,
            fold,
            dates,
            listed,
        });
    }
    out.sort_by_key(|p| p.id);
    Ok(out)
}

/// Reads `NORM_S2_patch.json` and averages `Fold_f.mean` / `Fold_f.std` over `folds` (in that order, repeats
/// counted) in f64 — `np.stack(v).mean(axis=0)`: a sequential sum then one division — then casts to f32.
pub(crate) fn read_norm(
    path: &Path,
    folds: &[usize],
    bands: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let root: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    let mut sums = [vec![0f64; bands], vec![0f64; bands]];
    for &f in folds {
        let key = format!("Fold_{f}");
        let entry = root
            .get(&key)
            .ok_or_else(|| Error::format(path, format!("unknown fold {f}: no \"{key}\" entry")))?;
        for (which, sum) in ["mean", "std"].iter().zip(sums.iter_mut()) {
            let vals = entry.get(which).and_then(Value::as_array).ok_or_else(|| {
                Error::format(
                    path,
                    format!("\"{key}\".\"{which}\" is missing or not an array"),
                )
            })?;
            if vals.len() != bands {
                return Err(Error::format(
                    path,
                    format!(
                        "\"{key}\".\"{which}\" has {} values, expected {bands} (one per band)",
                        vals.len()
                    ),
                ));
            }
            for (c, (s, v)) in sum.iter_mut().zip(vals).enumerate() {
                let x = v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                    Error::format(
                        path,
                        format!("\"{key}\".\"{which}\"[{c}] is {v}, not a finite number"),
                    )
                })?;
                *s += x;
            }
        }
    }
    let n = folds.len() as f64;
    let mean: Vec<f32> = sums[0].iter().map(|s| (s / n) as f32).collect();
    let std: Vec<f32> = sums[1].iter().map(|s| (s / n) as f32).collect();
    if let Some(c) = std.iter().position(|s| !(*s > 0.0 && s.is_finite())) {
        return Err(Error::format(
            path,
            format!(
                "the averaged std of band {c} over folds {folds:?} is {}, not a positive number",
                std[c]
            ),
        ));
    }
    if let Some(c) = mean.iter().position(|m| !m.is_finite()) {
        return Err(Error::format(
            path,
            format!("the averaged mean of band {c} overflows float32"),
        ));
    }
    Ok((mean, std))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_arithmetic_matches_python() {
        let r = Date::parse("2018-09-01").unwrap();
        // Python: (datetime(2018, 8, 20) - datetime(2018, 9, 1)).days == -12, etc.
        let d = |v| Date::from_yyyymmdd(v).unwrap().days_since(r);
        assert_eq!(d(20180820), -12);
        assert_eq!(d(20180901), 0);
        assert_eq!(d(20181001), 30);
        assert_eq!(d(20190101), 122);
        assert_eq!(d(20191001), 395);
        assert_eq!(d(20200301), 547); // 2020 is a leap year: Feb 29 counted
        assert_eq!(Date::new(1970, 1, 1).unwrap().days_since_epoch(), 0);
        assert_eq!(Date::new(2000, 3, 1).unwrap().days_since_epoch(), 11_017);
        assert_eq!(Date::new(1, 1, 1).unwrap().days_since_epoch(), -719_162);
        // plus_days inverts days_since, across month, leap-day and year ends.
        for days in [-12, 0, 30, 122, 395, 547, -719_162] {
            assert_eq!(r.plus_days(days).unwrap().days_since(r), days);
        }
        assert_eq!(r.plus_days(547), Date::new(2020, 3, 1));
        assert_eq!(r.plus_days(546), Date::new(2020, 2, 29));
        assert_eq!(Date::new(9999, 12, 31).unwrap().plus_days(1), None);
        assert_eq!(
            Date::parse("2019-8-1").unwrap(),
            Date::new(2019, 8, 1).unwrap()
        );
        assert!(Date::from_yyyymmdd(20190229).is_none());
        assert!(Date::from_yyyymmdd(20181301).is_none());
        assert!(Date::from_yyyymmdd(2018091).is_none());
        assert!(Date::parse("08-01-2019").is_err()); // the README's example: day 2019 does not exist
        assert!(Date::parse("2018-09").is_err());
        assert!(Date::parse("2018-02-30").is_err());
    }
}
