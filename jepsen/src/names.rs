//! Comma-separated lists of named values on the command line (`a,b,c` or
//! `all`), for the nemeses and the recovery faults alike.

/// Parses `s` as a list of names from `all` (each value's name by `name`),
/// or `all`; repeats are kept once. `what` names the kind in errors
/// ("nemesis", "fault").
pub fn parse_list<T: Copy + PartialEq>(
    s: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
) -> Result<Vec<T>, String> {
    if s.trim() == "all" {
        return Ok(all.to_vec());
    }
    let mut out = Vec::new();
    for word in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let value = parse_one(word, all, name, what)?;
        if !out.contains(&value) {
            out.push(value);
        }
    }
    if out.is_empty() {
        return Err(format!("no {what} named: use {} or all", names(all, name)));
    }
    Ok(out)
}

/// One name from `all`.
pub fn parse_one<T: Copy>(
    word: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|v| name(*v) == word)
        .ok_or_else(|| format!("unknown {what} {word:?}: use {} or all", names(all, name)))
}

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> String {
    all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Color {
        Red,
        Blue,
    }

    fn name(c: Color) -> &'static str {
        match c {
            Color::Red => "red",
            Color::Blue => "blue",
        }
    }

    #[test]
    fn lists_all_repeats_and_unknown_names() {
        let all = [Color::Red, Color::Blue];
        assert_eq!(
            parse_list("blue, red,blue", &all, name, "color"),
            Ok(vec![Color::Blue, Color::Red])
        );
        assert_eq!(parse_list(" all ", &all, name, "color"), Ok(all.to_vec()));
        let e = parse_list("red,green", &all, name, "color").unwrap_err();
        assert_eq!(e, "unknown color \"green\": use red, blue or all");
        assert!(parse_list(" , ", &all, name, "color")
            .unwrap_err()
            .starts_with("no color named"));
    }
}
