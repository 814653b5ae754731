//! Netlink capture bytes through the frame reader and the record parser: no panic on any split,
//! length or payload.
#![no_main]

use auditsentry::audit::record::parse_frame;
use auditsentry::source::file::{Format, FrameReader};
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    let reader = FrameReader::new(Cursor::new(data.to_vec()), Format::Netlink, "fuzz".into());
    for frame in reader.take(10_000) {
        if let Ok(frame) = frame {
            if let Ok(rec) = parse_frame(&frame) {
                let _ = rec.fields().count();
            }
        }
    }
});
