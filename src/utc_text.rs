//! UTC timestamps as text for the per-request writers: the access line (`logfmt::line`, whole
//! seconds) and the chat record (`chatlog`, milliseconds). Written digit by digit into a buffer
//! of the final size: chrono's formatter costs ~10× the instructions and these run once per
//! request. Both writers test their text against chrono's.

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`, eras
/// of 400 years; for days on or after the epoch).
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `n` as `width` decimal digits (zero-padded, the highest cut off), then `then`.
pub(crate) fn push_digits(out: &mut Vec<u8>, n: u64, width: u32, then: u8) {
    for i in (0..width).rev() {
        out.push(b'0' + (n / 10u64.pow(i) % 10) as u8);
    }
    out.push(then);
}

/// `YYYY-MM-DDTHH:MM:SS` of `secs` since the epoch, followed by `then` (years up to 9999).
pub(crate) fn push_date_time(out: &mut Vec<u8>, secs: u64, then: u8) {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let in_day = secs % 86_400;
    push_digits(out, year, 4, b'-');
    push_digits(out, month, 2, b'-');
    push_digits(out, day, 2, b'T');
    push_digits(out, in_day / 3600, 2, b':');
    push_digits(out, in_day / 60 % 60, 2, b':');
    push_digits(out, in_day % 60, 2, then);
}

#[cfg(test)]
mod tests {
    use super::push_date_time;
    use chrono::DateTime;

    #[test]
    fn dates_are_chronos() {
        // The epoch, leap days, century rules (2000 leaps, 2100 does not), the last second of 9999.
        for secs in [
            0u64,
            951_782_400,
            951_868_799,
            1_709_164_800,
            4_107_542_400,
            4_107_628_799,
            1_764_772_645,
            253_402_300_799,
        ] {
            let mut ours = Vec::new();
            push_date_time(&mut ours, secs, b'Z');
            let theirs = DateTime::from_timestamp(secs as i64, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            assert_eq!(String::from_utf8(ours).unwrap(), theirs, "{secs}");
        }
    }
}
