//! Properties of the AT digester: no input panics it, and chunking never changes what it sees.

use proptest::prelude::*;
use smsrelay::at::{Digester, Item, MAX_LINE, Pending};

fn digest(chunks: &[&[u8]], pending: Option<&str>) -> Vec<Item> {
    let mut digester = Digester::new();
    digester.set_pending(pending.map(Pending::new));
    let mut items = Vec::new();
    for chunk in chunks {
        digester.push(chunk);
        while let Some(item) = digester.next_item() {
            items.push(item);
        }
    }
    items
}

/// Realistic fragments, so generated streams are mostly well-formed AT traffic with noise.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"\r\nOK\r\n".to_vec()),
        Just(b"\r\n+CMTI: \"SM\",3\r\n".to_vec()),
        Just(b"\r\n+CMT: ,43\r\n0791AABB\r\n".to_vec()),
        Just(b"\r\n+CMGR: 0,,43\r\n".to_vec()),
        Just(b"\r\n+CMS ERROR: 500\r\n".to_vec()),
        Just(b"\r\n^RSSI:18\r\n".to_vec()),
        Just(b"AT+CMGR=1\r".to_vec()),
        Just(b"\r\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let items = digest(&[&bytes], Some("AT+CMGL=4"));
        for item in items {
            if let Item::Info(line) | Item::Unexpected(line) = item {
                prop_assert!(line.len() <= 3 * MAX_LINE);
            }
        }
    }

    #[test]
    fn chunking_never_changes_the_items(
        fragments in prop::collection::vec(fragment(), 0..40),
        cuts in prop::collection::vec(1usize..17, 1..64),
    ) {
        let stream: Vec<u8> = fragments.concat();
        let whole = digest(&[&stream], Some("AT+CMGR=1"));
        let mut chunks = Vec::new();
        let mut rest: &[u8] = &stream;
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (head, tail) = rest.split_at((*cut).min(rest.len()));
            chunks.push(head);
            rest = tail;
        }
        prop_assert_eq!(digest(&chunks, Some("AT+CMGR=1")), whole);
    }
}
