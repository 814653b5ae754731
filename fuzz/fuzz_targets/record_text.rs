//! The text record parser on arbitrary bytes: no panic, and a parsed record's fields and decoded
//! values can be walked without panicking either.
#![no_main]

use auditsentry::audit::record::{decode_value, parse_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = parse_text(data) {
        for (_, v) in rec.fields() {
            let _ = decode_value(v);
        }
        let _ = rec.field_u64(b"pid");
    }
});
