//! Record decoding from the store: arbitrary bytes (a corrupt or truncated sled
//! value) give `Err`, never a panic, a hang or a huge allocation; whatever decodes
//! re-encodes to a record that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memoryd::storage::codec as store;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = store::decode_message(data) {
        let again = store::encode_message(&m).expect("a decoded message re-encodes");
        assert_eq!(store::decode_message(&again).expect("re-decodes"), m);
    }
    if let Ok(s) = store::decode_summary(data) {
        let again = store::encode_summary(&s).expect("a decoded summary re-encodes");
        assert_eq!(store::decode_summary(&again).expect("re-decodes"), s);
    }
    if let Ok(ns) = store::decode_namespace("ns", data) {
        let again = store::encode_namespace(&ns);
        assert_eq!(store::decode_namespace("ns", &again).expect("re-decodes"), ns);
    }
    let _ = store::decode_change("ns", 1, data);
    let _ = store::decode_meta(data);
    for dim in [1, 3, 384] {
        if let Ok(v) = store::decode_vector(data, dim) {
            assert_eq!(v.len(), dim);
        }
    }
});
