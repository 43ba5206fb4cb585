//! The address parser against arbitrary UTF-8: never a panic, every error has
//! a message, and every accepted address prints in a form that parses back to
//! the same address; the same for destinations (addresses or host names).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::{Destination, SockAddr};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = SockAddr::parse(input);
    assert_eq!(
        input.parse::<SockAddr>(),
        parsed,
        "FromStr agrees with parse"
    );
    match parsed {
        Ok(addr) => {
            let shown = addr.to_string();
            assert_eq!(
                SockAddr::parse(&shown),
                Ok(addr.clone()),
                "{input:?} printed as {shown:?}"
            );
            // Printing is canonical: the printed form prints the same.
            assert_eq!(SockAddr::parse(&shown).unwrap().to_string(), shown);
            assert_eq!(addr.is_local(), shown.starts_with("unix:"));
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
    // A destination (an address or a name) prints as it parses, too.
    match Destination::parse(input) {
        Ok(dest) => {
            let shown = dest.to_string();
            assert_eq!(
                Destination::parse(&shown),
                Ok(dest),
                "{input:?} printed as {shown:?}"
            );
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
});
