//! Amounts of FIL as operators write and read them: decimals of whole FIL, not attoFIL.

use fvm_shared::econ::TokenAmount;

/// Parses an amount of FIL written as a decimal (`"1"`, `"0.25"`, `"1000000"`) into attoFIL.
pub fn parse_fil(text: &str) -> Result<TokenAmount, String> {
    let text = text.trim().trim_end_matches("FIL").trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(format!("{text:?} is not an amount of FIL"));
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not an amount of FIL: write a decimal such as 10 or 0.5"
        ));
    }
    if fraction.len() > 18 {
        return Err(format!(
            "{text:?} has more than 18 decimals (1 attoFIL = 1e-18 FIL)"
        ));
    }
    let digits = format!("{whole}{fraction:0<18}");
    let atto: num_bigint::BigInt = digits.trim_start_matches('0').parse().unwrap_or_default();
    Ok(TokenAmount::from_atto(atto))
}

/// Prints attoFIL as FIL with up to 18 decimals, trailing zeros removed.
pub fn format_fil(amount: &TokenAmount) -> String {
    let atto = amount.atto();
    let negative = atto.sign() == num_bigint::Sign::Minus;
    let digits = atto.magnitude().to_string();
    let padded = format!("{digits:0>19}");
    let (whole, fraction) = padded.split_at(padded.len() - 18);
    let fraction = fraction.trim_end_matches('0');
    let sign = if negative { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{whole} FIL")
    } else {
        format!("{sign}{whole}.{fraction} FIL")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fil_amounts_parse_and_print() {
        assert_eq!(parse_fil("1").expect("1"), TokenAmount::from_whole(1));
        assert_eq!(
            parse_fil("0.5").expect("0.5").atto().to_string(),
            "500000000000000000"
        );
        assert_eq!(
            parse_fil("10 FIL").expect("10"),
            TokenAmount::from_whole(10)
        );
        for bad in ["", "-1", "1e5", "abc", "1.2.3", "0.0000000000000000001"] {
            assert!(parse_fil(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            format_fil(&TokenAmount::from_atto(1_500_000_000_000_000_000u128)),
            "1.5 FIL"
        );
        assert_eq!(
            format_fil(&TokenAmount::from_atto(1)),
            "0.000000000000000001 FIL"
        );
        assert_eq!(format_fil(&TokenAmount::from_atto(0)), "0 FIL");
    }
}
