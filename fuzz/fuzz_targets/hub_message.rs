//! The hub's message parser over any text: no panic, and a message it
//! accepts is one the protocol allows (a command with a well-formed key and
//! a function, surviving a round trip through its JSON).

#![no_main]

use cobrowse::{ClientMessage, parse_hub_message as parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text) {
        Ok(ClientMessage::Command(command)) => {
            assert!(
                command.check().is_ok(),
                "accepted a malformed command: {command:?}"
            );
            let mut json = serde_json::to_value(&command).expect("a command serialises");
            json["type"] = "command".into();
            let again = parse(&json.to_string()).expect("a delivered command parses again");
            assert_eq!(again, ClientMessage::Command(command));
        }
        Ok(message) => {
            let _ = message.name();
        }
        Err(refusal) => {
            // The refusal is sent back as JSON: it must serialise.
            let back: serde_json::Value =
                serde_json::from_str(&refusal.to_json()).expect("a refusal is JSON");
            assert_eq!(back["type"], "error");
        }
    }
});
