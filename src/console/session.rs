//! The console's sign-in sessions: in memory, each with its CSRF token and an expiry, at most
//! [`MAX_SESSIONS`] of them. Pure: time is passed in, ids come from the caller.

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

/// How long a sign-in lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// How many sessions are kept; signing in past this ends the one that expires first.
pub const MAX_SESSIONS: usize = 64;

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The token every form of this session carries.
    pub csrf: String,
    /// When it ends.
    pub expires_at: Instant,
}

/// The sessions by id.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
}

impl Sessions {
    /// Starts a session `id` with its CSRF token; drops expired ones and, when full, the one
    /// that would expire first.
    pub fn create(&mut self, id: String, csrf: String, now: Instant) {
        self.by_id.retain(|_, session| session.expires_at > now);
        while self.by_id.len() >= MAX_SESSIONS {
            let oldest = self
                .by_id
                .iter()
                .min_by_key(|(_, session)| session.expires_at)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(oldest) => self.by_id.remove(&oldest),
                None => break,
            };
        }
        let expires_at = now + SESSION_LIFETIME;
        self.by_id.insert(id, Session { csrf, expires_at });
    }

    /// The live session `id`, if any; an expired one is removed.
    pub fn get(&mut self, id: &str, now: Instant) -> Option<Session> {
        let session = self.by_id.get(id)?.clone();
        if session.expires_at > now {
            Some(session)
        } else {
            self.by_id.remove(id);
            None
        }
    }

    /// Ends session `id`.
    pub fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    /// How many sessions are held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// 32 random bytes from the kernel, hex: a session id or a CSRF token.
pub fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Constant-time comparison: a token must not leak through timing.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::{MAX_SESSIONS, SESSION_LIFETIME, Sessions, random_token, same};
    use std::time::{Duration, Instant};

    /// After these steps (create `id` at second `t`, or remove `id`), is `id` live at `at`?
    fn check(steps: &[(&str, &str, u64)], probe: &str, at: u64, expected: bool) {
        let start = Instant::now();
        let mut sessions = Sessions::default();
        for (action, id, second) in steps {
            let now = start + Duration::from_secs(*second);
            match *action {
                "create" => sessions.create(id.to_string(), format!("csrf-{id}"), now),
                _ => sessions.remove(id),
            }
        }
        let found = sessions.get(probe, start + Duration::from_secs(at));
        assert_eq!(found.is_some(), expected, "{steps:?} {probe} at {at}");
        if let Some(session) = found {
            assert_eq!(session.csrf, format!("csrf-{probe}"));
        }
    }

    #[test]
    fn sessions_live_until_they_expire_or_are_ended() {
        let life = SESSION_LIFETIME.as_secs();
        check(&[("create", "a", 0)], "a", 0, true);
        check(&[("create", "a", 0)], "a", life - 1, true);
        check(&[("create", "a", 0)], "a", life, false);
        check(&[("create", "a", 0)], "b", 0, false);
        check(&[("create", "a", 0), ("remove", "a", 1)], "a", 2, false);
        check(&[("create", "a", 0), ("create", "b", 5)], "a", 6, true);
    }

    #[test]
    fn a_full_table_drops_the_session_expiring_first() {
        let start = Instant::now();
        let mut sessions = Sessions::default();
        for n in 0..=MAX_SESSIONS as u64 {
            sessions.create(format!("s{n}"), "c".into(), start + Duration::from_secs(n));
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.get("s0", start).is_none());
        assert!(sessions.get("s1", start).is_some());
    }

    #[test]
    fn tokens_are_long_random_and_compared_whole() {
        let one = random_token().expect("urandom");
        let two = random_token().expect("urandom");
        assert_eq!(one.len(), 64);
        assert_ne!(one, two);
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
