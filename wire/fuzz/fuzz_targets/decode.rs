//! Feeds arbitrary bytes to the frame decoder: it must return a typed error
//! or a message, never panic, and a decoded message must re-encode to the
//! same frame.
#![no_main]

use factoryos_wire::FrameCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = FrameCodec::new(64 * 1024);
    if let Ok(env) = codec.decode(data) {
        let again = codec.encode(&env).expect("a decoded message re-encodes");
        assert_eq!(codec.decode(&again).expect("re-decodes"), env);
    }
});
