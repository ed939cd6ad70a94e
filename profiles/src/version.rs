//! OS and app versions as phones report them: `14`, `17.4`, `5.2.1`. They are not semantic
//! versions (iOS has one to three parts, Android one), so the `semver` crate refuses most of
//! them; a version here is one to four dot-separated numbers compared part by part, with
//! missing parts counting as zero (`17` equals `17.0`).

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone)]
pub struct OsVersion(Vec<u32>);

/// Equal as ordered: `17` is `17.0`.
impl PartialEq for OsVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for OsVersion {}

impl OsVersion {
    pub fn parse(input: &str) -> Result<Self, String> {
        let text = input.trim();
        // Digits only: `str::parse` would also take a leading `+`.
        let parts: Option<Vec<u32>> = text
            .split('.')
            .map(|p| {
                (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| p.parse::<u32>().ok())
                    .flatten()
            })
            .collect();
        match parts {
            Some(parts) if (1..=4).contains(&parts.len()) => Ok(OsVersion(parts)),
            _ => Err(format!(
                "'{input}' is not a version; expected one to four numbers with dots, such as 17.4"
            )),
        }
    }

    fn part(&self, i: usize) -> u32 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

impl Ord for OsVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (0..4)
            .map(|i| self.part(i).cmp(&other.part(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for OsVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for OsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> OsVersion {
        OsVersion::parse(s).expect("version")
    }

    #[test]
    fn versions_compare_part_by_part() {
        assert!(v("13") < v("14"));
        assert!(v("17.4") > v("17.3.9"));
        assert!(v("17.10") > v("17.9"));
        assert_eq!(v("17").cmp(&v("17.0.0")), Ordering::Equal);
        assert_eq!(v(" 5.2.1 ").to_string(), "5.2.1");
    }

    #[test]
    fn things_that_are_not_versions_are_refused() {
        for bad in ["", "fjorton", "17.", "1.2.3.4.5", "-1", "+17", "17.4b"] {
            assert!(OsVersion::parse(bad).is_err(), "{bad}");
        }
    }
}
