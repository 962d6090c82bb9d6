//! The app port's new name. Port names are IANA service names: at most 15 characters of
//! a-z, 0-9 and '-', at least one letter, no '-' at either end and no "--". The name must
//! also be unique in the pod, or probes and Services could resolve it to another port.

use std::collections::HashSet;

const MAX_LEN: usize = 15;

/// Whether the API server accepts `name` as a port name.
pub fn is_port_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.iter().any(u8::is_ascii_lowercase)
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && !name.contains("--")
}

/// The app port's new name: `app-<name>` when it fits and is free; else `app<n>-` and as
/// much of the name as fits, for n = 1, 2...; and should the original be no valid name
/// (the API server will refuse the pod anyway), `app-<number>`. Deterministic, so that the
/// webhook and `portcullis inject` agree.
pub fn app_port_name(original: &str, number: i32, taken: &HashSet<String>) -> String {
    let free = |candidate: &String| is_port_name(candidate) && !taken.contains(candidate);
    let from_name = (0..100).map(|n| {
        let prefix = if n == 0 { "app-".to_owned() } else { format!("app{n}-") };
        let room = MAX_LEN - prefix.len();
        let head: String = original.chars().take(room).collect();
        format!("{prefix}{}", head.trim_end_matches('-'))
    });
    let from_number =
        (0..).map(|n| if n == 0 { format!("app-{number}") } else { format!("app{n}-{number}") });
    // `from_number` is endless and `taken` finite, so a free name always comes.
    from_name.chain(from_number).find(free).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn knows_valid_port_names() {
        for name in ["http", "a", "http-8080", "grpc-web", "x1", "abcdefghijklmno"] {
            assert!(is_port_name(name), "{name}");
        }
        for name in ["", "HTTP", "-http", "http-", "a--b", "8080", "abcdefghijklmnop", "a_b", "é"]
        {
            assert!(!is_port_name(name), "{name}");
        }
    }

    #[test]
    fn prefixes_app_when_it_fits() {
        assert_eq!(app_port_name("http", 8080, &taken(&["http"])), "app-http");
        assert_eq!(app_port_name("metrics-http", 8080, &taken(&[])), "app-metrics-htt");
        assert_eq!(app_port_name("abcdefghijk", 8080, &taken(&[])), "app-abcdefghijk");
    }

    #[test]
    fn shortens_long_names_to_valid_ones() {
        // 15 characters: the longest name a port may have.
        let name = app_port_name("public-https-v2", 8443, &taken(&["public-https-v2"]));
        assert_eq!(name, "app-public-http");
        // A cut that would end on '-' drops it.
        let name = app_port_name("webserver-x-abc", 80, &taken(&[]));
        assert_eq!(name, "app-webserver-x");
        let name = app_port_name("webserver-ab-cd", 80, &taken(&[]));
        assert_eq!(name, "app-webserver-a");
        let name = app_port_name("webserver1-abcd", 80, &taken(&[]));
        assert_eq!(name, "app-webserver1");
        assert!(is_port_name(&name));
    }

    #[test]
    fn avoids_names_taken_in_the_pod() {
        let name = app_port_name("http", 8080, &taken(&["http", "app-http"]));
        assert_eq!(name, "app1-http");
        let name = app_port_name(
            "long-port-name1",
            8080,
            &taken(&["long-port-name1", "app-long-port-n", "app1-long-port"]),
        );
        assert_eq!(name, "app2-long-port");
    }

    #[test]
    fn falls_back_to_the_number_for_an_invalid_name() {
        assert_eq!(app_port_name("HTTP", 8080, &taken(&["HTTP"])), "app-8080");
        assert_eq!(app_port_name("HTTP", 8080, &taken(&["HTTP", "app-8080"])), "app1-8080");
    }
}
