//! A cheap upper bound on how deeply a YAML document nests, checked before the parser
//! sees it: the YAML parser recurses once per level, so a 200 KB file of `- - - - …`
//! would otherwise overflow the stack and kill the process instead of getting an error.
//!
//! The estimate never undercounts: every block level needs its own indentation or a
//! leading `- `/`? ` on its line, and every flow level a `[` or `{` outside quotes. It
//! may overcount (a block scalar's text is not YAML), which only matters past the limit,
//! far beyond any real config.

/// Deepest nesting accepted. Real configs nest fewer than 15 levels.
pub const MAX_NESTING: usize = 64;

/// The 1-based line where the estimated nesting first exceeds [`MAX_NESTING`].
pub fn too_deep(text: &str) -> Option<usize> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    // Inside a block scalar (`|`, `>`): lines indented deeper than this are text.
    let mut scalar_parent: Option<usize> = None;
    for (number, line) in text.lines().enumerate() {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if let Some(parent) = scalar_parent {
            if indent > parent {
                continue;
            }
            scalar_parent = None;
        }
        if flow == 0 {
            while indents.last().is_some_and(|&top| top >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        let (inline, rest) = leading_indicators(content);
        let line_flow_peak = flow + flow_delta_peak(rest, &mut flow);
        let depth = indents.len() + inline + line_flow_peak;
        if depth > MAX_NESTING {
            return Some(number + 1);
        }
        if starts_block_scalar(rest) {
            scalar_parent = Some(indent);
        }
    }
    None
}

/// Counts the `- ` and `? ` indicators that open nested nodes on one line.
fn leading_indicators(mut content: &str) -> (usize, &str) {
    let mut count = 0;
    loop {
        let next = ["- ", "? ", "-\t", "?\t"]
            .iter()
            .find_map(|p| content.strip_prefix(p));
        match next {
            Some(rest) => {
                count += 1;
                content = rest.trim_start_matches([' ', '\t']);
            }
            None if content == "-" || content == "?" => return (count + 1, ""),
            None => return (count, content),
        }
    }
}

/// Updates the open flow collections across `rest` and returns how far above the
/// starting level they went on this line. Quoted text and comments do not count.
fn flow_delta_peak(rest: &str, flow: &mut usize) -> usize {
    let start = *flow;
    let mut peak = start;
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some('"') if c == '\\' => {
                chars.next();
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' if previous.is_whitespace() || "[{,:".contains(previous) => {
                    quote = Some(c)
                }
                '#' if previous.is_whitespace() => break,
                '[' | '{' => {
                    *flow += 1;
                    peak = peak.max(*flow);
                }
                ']' | '}' => *flow = flow.saturating_sub(1),
                _ => {}
            },
        }
        previous = c;
    }
    peak - start
}

/// True if the line ends with a block scalar header (`key: |`, `- >-`, `|2+`).
fn starts_block_scalar(rest: &str) -> bool {
    let without_comment = rest.split(" #").next().unwrap_or(rest).trim_end();
    let Some(last) = without_comment.rsplit([' ', '\t']).next() else {
        return false;
    };
    let mut chars = last.chars();
    matches!(chars.next(), Some('|' | '>'))
        && chars.all(|c| c == '-' || c == '+' || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_configs_are_far_from_the_limit() {
        let config = "region: us-east-1\nroles:\n  a:\n    roleArn: arn\nsecrets:\n  - name: db\n    targets:\n      - file: {dir: /x, mode: \"0440\"}\n    mapping:\n      templates:\n        URL: |\n          - - - - {{ [[[[ }}\n          {% for k in x %}{{ k }}{% endfor %}\n";
        assert_eq!(too_deep(config), None);
    }

    #[test]
    fn every_way_of_nesting_is_counted() {
        let dashes = format!("secrets:\n  {}x\n", "- ".repeat(100));
        assert_eq!(too_deep(&dashes), Some(2));
        let questions = format!("{}x\n", "? ".repeat(100));
        assert_eq!(too_deep(&questions), Some(1));
        let flow = format!("a: {}\n", "[".repeat(100));
        assert_eq!(too_deep(&flow), Some(1));
        let flow_lines = format!("a:\n{}", "  [\n".repeat(100));
        assert!(too_deep(&flow_lines).is_some());
        let mut indented = String::new();
        for level in 0..100 {
            indented.push_str(&format!("{}k{level}:\n", " ".repeat(level)));
        }
        assert_eq!(too_deep(&indented), Some(MAX_NESTING + 1));
    }

    #[test]
    fn quotes_comments_and_block_scalars_do_not_count() {
        let quoted = format!("a: \"{}\"\nb: '{}'\n", "[".repeat(100), "{".repeat(100));
        assert_eq!(too_deep(&quoted), None);
        let comment = format!("a: 1 # {}\n", "[".repeat(100));
        assert_eq!(too_deep(&comment), None);
        let scalar = format!("a: |\n  {}\nb: 1\n", "- ".repeat(100));
        assert_eq!(too_deep(&scalar), None);
        // …but the scalar ends where its indentation does.
        let after = format!("a: |\n  text\n{}x\n", "- ".repeat(100));
        assert_eq!(too_deep(&after), Some(3));
    }

    #[test]
    fn exactly_the_limit_passes() {
        let at = format!("{}x\n", "- ".repeat(MAX_NESTING - 1));
        assert_eq!(too_deep(&at), None);
        let over = format!("{}x\n", "- ".repeat(MAX_NESTING));
        assert_eq!(too_deep(&over), Some(1));
    }
}
