//! The Luhn (mod 10) check used by IMEIs and Swedish organisation numbers.
//! Six lines of arithmetic; a dependency would cost more than it saves.

/// True when the ASCII digits pass the Luhn check (the last digit is the check digit).
pub fn is_valid(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

/// The check digit that makes `payload` followed by it pass [`is_valid`].
pub fn check_digit(payload: &str) -> char {
    (b'0'..=b'9')
        .map(char::from)
        .find(|d| is_valid(&format!("{payload}{d}")))
        .unwrap_or('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_known_good_numbers() {
        assert!(is_valid("490154203237518")); // IMEI from the GSMA example
        assert!(is_valid("5560360793")); // SAAB AB's organisation number
    }

    #[test]
    fn computes_the_check_digit() {
        assert_eq!(check_digit("49015420323751"), '8');
        assert_eq!(check_digit("556036079"), '3');
    }

    #[test]
    fn refuses_a_changed_digit() {
        assert!(!is_valid("490154203237519"));
        assert!(!is_valid("5560360794"));
        assert!(!is_valid(""));
    }
}
