//! The YAML document as a compact tree, built from saphyr-parser's events (read from the text
//! as saphyr reads it, scalars resolved by saphyr's own rules): one vector of nodes and one of
//! child indexes.
//!
//! saphyr's own node tree keeps a hash map per mapping and a ~100-byte node per value, about
//! 3.4 KiB per secret entry: 340 MB at 100,000 secrets, in small allocations that glibc keeps
//! resident after the tree is dropped (the config and the jobs are allocated between them).
//! Here a node is at most 56 bytes, in two large vectors which the allocator maps on their own and
//! returns to the system when the tree goes. Aliases share the anchor's children instead of
//! copying them; the readers still walk every alias, so the budget of aliased nodes is
//! kept (saphyr's default, with its message).

use saphyr::{Marker, Scalar, ScanError, Tag, Yaml};
use saphyr_parser::{Event, Parser, Span, SpannedEventReceiver};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

/// Nodes that aliases may add across the document: saphyr's default.
const ALIAS_LIMIT: usize = 100_000;

/// The documents of a YAML text.
pub(super) struct Tree<'a> {
    nodes: Vec<Node<'a>>,
    /// A sequence's items, a mapping's keys and values (alternating), by range.
    links: Vec<u32>,
    docs: Vec<u32>,
}

struct Node<'a> {
    data: Stored<'a>,
    /// Char offsets in the text, as the parser marks them.
    start: u32,
    end: u32,
    line: u32,
    /// This node and every node below it, for the alias budget.
    size: u32,
}

enum Stored<'a> {
    Value(Scalar<'a>),
    Sequence {
        at: u32,
        len: u32,
    },
    Mapping {
        at: u32,
        len: u32,
    },
    /// A custom tag (`!foo`), which carries no meaning here; the tagged node.
    Tagged(u32),
    Bad,
}

/// A node of the tree: a reference and an index, cheap to copy.
#[derive(Clone, Copy)]
pub(super) struct NodeRef<'a> {
    tree: &'a Tree<'a>,
    id: u32,
}

/// What a node holds, tags looked through.
pub(super) enum Data<'a> {
    Value(&'a Scalar<'a>),
    Sequence(Items<'a>),
    Mapping(Pairs<'a>),
    Bad,
}

/// A sequence's items.
#[derive(Clone, Copy)]
pub(super) struct Items<'a> {
    tree: &'a Tree<'a>,
    links: &'a [u32],
}

/// A mapping's keys and values, in document order.
#[derive(Clone, Copy)]
pub(super) struct Pairs<'a> {
    tree: &'a Tree<'a>,
    links: &'a [u32],
}

/// Why the text is not a YAML document: the line and the parser's words.
pub(super) struct LoadError {
    pub(super) line: usize,
    pub(super) info: String,
}

// === impl Tree ===

impl<'a> Tree<'a> {
    pub(super) fn load(text: &'a str) -> Result<Self, LoadError> {
        let mut builder = Builder {
            tree: Tree {
                nodes: Vec::new(),
                links: Vec::new(),
                docs: Vec::new(),
            },
            open: Vec::new(),
            pending: Vec::new(),
            anchors: BTreeMap::new(),
            alias_budget: ALIAS_LIMIT,
            error: None,
        };
        let parsed = Parser::new_from_iter(text.chars()).load(&mut builder, true);
        let error = parsed.err().or(builder.error);
        match error {
            Some(e) => Err(LoadError {
                line: e.marker().line(),
                info: e.info().to_owned(),
            }),
            None => Ok(builder.tree),
        }
    }

    pub(super) fn documents(&'a self) -> impl Iterator<Item = NodeRef<'a>> + 'a {
        self.docs.iter().map(move |&id| NodeRef { tree: self, id })
    }

    fn node(&self, id: u32) -> Option<&Node<'a>> {
        self.nodes.get(id as usize)
    }
}

// === impl NodeRef ===

impl<'a> NodeRef<'a> {
    /// 1-based, as the parser counts.
    pub(super) fn line(self) -> usize {
        self.tree.node(self.id).map_or(0, |n| n.line as usize)
    }

    /// Where the node starts and ends in the text, in chars.
    pub(super) fn char_span(self) -> (usize, usize) {
        self.tree
            .node(self.id)
            .map_or((0, 0), |n| (n.start as usize, n.end as usize))
    }

    pub(super) fn data(self) -> Data<'a> {
        let tree = self.tree;
        let mut id = self.id;
        // A chain of tags is at most as long as the tree.
        for _ in 0..=tree.nodes.len() {
            let Some(node) = tree.node(id) else {
                return Data::Bad;
            };
            let range = |at: u32, len: usize| {
                let at = at as usize;
                tree.links.get(at..at + len).unwrap_or_default()
            };
            return match &node.data {
                Stored::Tagged(inner) => {
                    id = *inner;
                    continue;
                }
                Stored::Value(scalar) => Data::Value(scalar),
                Stored::Sequence { at, len } => Data::Sequence(Items {
                    tree,
                    links: range(*at, *len as usize),
                }),
                Stored::Mapping { at, len } => Data::Mapping(Pairs {
                    tree,
                    links: range(*at, 2 * *len as usize),
                }),
                Stored::Bad => Data::Bad,
            };
        }
        Data::Bad
    }
}

// === impl Items, Pairs ===

impl<'a> Items<'a> {
    pub(super) fn iter(self) -> impl Iterator<Item = NodeRef<'a>> + 'a {
        let tree = self.tree;
        self.links.iter().map(move |&id| NodeRef { tree, id })
    }
}

impl<'a> Pairs<'a> {
    pub(super) fn len(self) -> usize {
        self.links.len() / 2
    }

    pub(super) fn iter(self) -> impl Iterator<Item = (NodeRef<'a>, NodeRef<'a>)> + 'a {
        let tree = self.tree;
        self.links
            .chunks_exact(2)
            .map(move |pair| (NodeRef { tree, id: pair[0] }, NodeRef { tree, id: pair[1] }))
    }

    pub(super) fn keys(self) -> impl Iterator<Item = NodeRef<'a>> + 'a {
        self.iter().map(|(key, _)| key)
    }
}

// === the builder ===

struct Builder<'a> {
    tree: Tree<'a>,
    open: Vec<Open<'a>>,
    /// The children of every open collection, innermost last.
    pending: Vec<u32>,
    anchors: BTreeMap<usize, u32>,
    alias_budget: usize,
    error: Option<ScanError>,
}

/// A collection whose end has not been seen yet.
struct Open<'a> {
    mapping: bool,
    /// Where its children start in `pending`.
    from: usize,
    anchor: usize,
    tag: Option<Cow<'a, Tag>>,
    start: Marker,
}

impl<'a> SpannedEventReceiver<'a> for Builder<'a> {
    fn on_event(&mut self, ev: Event<'a>, span: Span) {
        // After an error the stream is not to be trusted; the first error is the one told.
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.event(ev, span) {
            self.error = Some(e);
        }
    }
}

impl<'a> Builder<'a> {
    fn event(&mut self, ev: Event<'a>, span: Span) -> Result<(), ScanError> {
        match ev {
            Event::DocumentStart(_) | Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
            Event::DocumentEnd => {
                if self.open.is_empty() {
                    match self.pending.pop() {
                        Some(doc) => self.tree.docs.push(doc),
                        // An empty document.
                        None => {
                            let bad = self.push(Stored::Bad, span.start, span.end, 1)?;
                            self.tree.docs.push(bad);
                        }
                    }
                    self.pending.clear();
                }
            }
            Event::SequenceStart(anchor, tag) => self.open.push(Open {
                mapping: false,
                from: self.pending.len(),
                anchor,
                tag,
                start: span.start,
            }),
            Event::MappingStart(anchor, tag) => {
                let mapping = true;
                self.open.push(Open {
                    mapping,
                    from: self.pending.len(),
                    anchor,
                    tag,
                    start: span.start,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(open) = self.open.pop() else {
                    return Err(ScanError::new_str(span.start, "unbalanced collection end"));
                };
                let children = self.pending.split_off(open.from);
                if open.mapping {
                    self.check_keys(&children, open.start)?;
                }
                let at = count(self.tree.links.len(), open.start)?;
                let len = count(
                    children.len() / if open.mapping { 2 } else { 1 },
                    open.start,
                )?;
                let size = children
                    .iter()
                    .filter_map(|&c| self.tree.node(c))
                    .fold(1u32, |sum, n| sum.saturating_add(n.size));
                self.tree.links.extend_from_slice(&children);
                let data = if open.mapping {
                    Stored::Mapping { at, len }
                } else {
                    Stored::Sequence { at, len }
                };
                let mut id = self.push(data, open.start, span.start, size)?;
                if open.tag.is_some_and(|t| !t.is_yaml_core_schema()) {
                    id = self.push(Stored::Tagged(id), open.start, span.start, size)?;
                }
                self.insert(id, open.anchor);
            }
            Event::Scalar(value, style, anchor, tag) => {
                let id = match Yaml::value_from_cow_and_metadata(value, style, tag.as_ref()) {
                    Yaml::Value(scalar) => {
                        self.push(Stored::Value(scalar), span.start, span.end, 1)?
                    }
                    Yaml::Tagged(_, inner) => {
                        let inner = match *inner {
                            Yaml::Value(scalar) => Stored::Value(scalar),
                            _ => Stored::Bad,
                        };
                        let inner = self.push(inner, span.start, span.end, 1)?;
                        self.push(Stored::Tagged(inner), span.start, span.end, 2)?
                    }
                    _ => self.push(Stored::Bad, span.start, span.end, 1)?,
                };
                self.insert(id, anchor);
            }
            Event::Alias(anchor) => {
                let id = match self.anchors.get(&anchor).copied() {
                    Some(target) => self.alias(target, span)?,
                    None => self.push(Stored::Bad, span.start, span.end, 1)?,
                };
                self.insert(id, 0);
            }
        }
        Ok(())
    }

    /// A new node at the alias, sharing the anchor's data (and children), so that it is
    /// told at its own line; its subtree is charged to the budget.
    fn alias(&mut self, target: u32, span: Span) -> Result<u32, ScanError> {
        let Some(node) = self.tree.node(target) else {
            return self.push(Stored::Bad, span.start, span.end, 1);
        };
        let size = node.size as usize;
        if size > self.alias_budget {
            self.alias_budget = 0;
            return Err(ScanError::new_str(
                span.start,
                "alias expansion exceeded the maximum node budget (possible billion-laughs attack)",
            ));
        }
        self.alias_budget -= size;
        let data = match &node.data {
            Stored::Value(scalar) => Stored::Value(scalar.clone()),
            Stored::Sequence { at, len } => Stored::Sequence { at: *at, len: *len },
            Stored::Mapping { at, len } => Stored::Mapping { at: *at, len: *len },
            Stored::Tagged(inner) => Stored::Tagged(*inner),
            Stored::Bad => Stored::Bad,
        };
        let size = node.size;
        self.push(data, span.start, span.end, size)
    }

    fn push(
        &mut self,
        data: Stored<'a>,
        start: Marker,
        end: Marker,
        size: u32,
    ) -> Result<u32, ScanError> {
        let id = count(self.tree.nodes.len(), start)?;
        self.tree.nodes.push(Node {
            data,
            start: count(start.index(), start)?,
            end: count(end.index(), start)?,
            line: count(start.line(), start)?,
            size,
        });
        Ok(id)
    }

    fn insert(&mut self, id: u32, anchor: usize) {
        // Valid anchor ids start at 1.
        if anchor > 0 {
            self.anchors.insert(anchor, id);
        }
        self.pending.push(id);
    }

    /// YAML forbids a key twice in one mapping; saphyr reported it at load, and so does this.
    fn check_keys(&self, children: &[u32], start: Marker) -> Result<(), ScanError> {
        let keys: Vec<(&Scalar<'_>, Marker)> = children
            .iter()
            .step_by(2)
            .filter_map(|&k| {
                let node = NodeRef {
                    tree: &self.tree,
                    id: k,
                };
                match (node.data(), self.tree.node(k)) {
                    (Data::Value(scalar), Some(n)) => Some((
                        scalar,
                        Marker::new(n.start as usize, n.line as usize, start.col()),
                    )),
                    _ => None,
                }
            })
            .collect();
        let mut seen = HashSet::with_capacity(keys.len());
        for (key, mark) in keys {
            if !seen.insert(key) {
                return Err(ScanError::new_str(mark, "duplicated key in mapping"));
            }
        }
        Ok(())
    }
}

/// Positions and counts fit in 32 bits for any text the parser can hold in memory; one that
/// does not is refused rather than wrapped.
fn count(n: usize, at: Marker) -> Result<u32, ScanError> {
    u32::try_from(n).map_err(|_| ScanError::new_str(at, "the document is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Tree<'_> {
        match Tree::load(text) {
            Ok(tree) => tree,
            Err(e) => panic!("line {}: {}", e.line, e.info),
        }
    }

    fn string<'a>(node: NodeRef<'a>) -> &'a str {
        match node.data() {
            Data::Value(Scalar::String(s)) => s,
            _ => panic!("not a string"),
        }
    }

    #[test]
    fn mappings_keep_document_order_lines_and_the_text_as_written() {
        let text = "b: 1\na: [x, 'y']\nc: !custom {k: v}\n";
        let tree = load(text);
        let doc = tree.documents().next().unwrap();
        let Data::Mapping(map) = doc.data() else {
            panic!("not a mapping");
        };
        let keys: Vec<&str> = map.keys().map(string).collect();
        assert_eq!(keys, ["b", "a", "c"]);
        let (_, a) = map.iter().nth(1).unwrap();
        assert_eq!(a.line(), 2);
        let Data::Sequence(items) = a.data() else {
            panic!("not a sequence");
        };
        let items: Vec<&str> = items.iter().map(string).collect();
        assert_eq!(items, ["x", "y"]);
        let (start, end) = a.char_span();
        assert_eq!(&text[start..=end], "[x, 'y']");
        // The custom tag is looked through.
        let (_, c) = map.iter().nth(2).unwrap();
        assert!(matches!(c.data(), Data::Mapping(m) if m.len() == 1));
        let (_, b) = map.iter().next().unwrap();
        assert!(matches!(b.data(), Data::Value(Scalar::Integer(1))));
    }

    #[test]
    fn an_alias_shares_its_anchor_and_is_told_at_its_own_line() {
        let tree = load("a: &x {k: v}\nb: *x\n");
        // a, k, v, {k: v}, b, the alias (one node: it copies no children) and the root.
        assert_eq!(tree.nodes.len(), 7);
        let doc = tree.documents().next().unwrap();
        let Data::Mapping(map) = doc.data() else {
            panic!("not a mapping");
        };
        let (_, b) = map.iter().nth(1).unwrap();
        assert_eq!(b.line(), 2);
        let Data::Mapping(shared) = b.data() else {
            panic!("the alias is not the anchored mapping");
        };
        let (k, v) = shared.iter().next().unwrap();
        assert_eq!((string(k), string(v)), ("k", "v"));
    }

    #[test]
    fn an_alias_bomb_exceeds_the_budget_and_an_unknown_alias_is_a_bad_value() {
        let mut bomb = String::from("l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n");
        for level in 1..7 {
            let below = format!("*l{}", level - 1);
            bomb.push_str(&format!(
                "l{level}: &l{level} [{}]\n",
                vec![below; 10].join(", ")
            ));
        }
        let Err(e) = Tree::load(&bomb) else {
            panic!("a million aliased nodes were accepted");
        };
        assert!(e.info.contains("billion-laughs"), "{}", e.info);
        // l4's eighth alias of l3 (11,111 nodes each) passes 100,000 in all.
        assert_eq!(e.line, 5, "told where the budget ran out");
    }

    #[test]
    fn a_node_stays_small() {
        // The point of this tree: a secret entry is about 15 nodes.
        assert!(
            std::mem::size_of::<Node>() <= 56,
            "{}",
            std::mem::size_of::<Node>()
        );
    }

    #[test]
    fn a_duplicate_key_is_refused_at_its_line() {
        for text in [
            "a: 1\nb: 2\na: 3\n",
            "{a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9,\n a: 0}\n",
        ] {
            let Err(e) = Tree::load(text) else {
                panic!("accepted {text:?}");
            };
            assert_eq!(e.info, "duplicated key in mapping");
            assert!(e.line >= 2, "{text:?}: line {}", e.line);
        }
        // The same key in two mappings is not a duplicate.
        load("a: {k: 1}\nb: {k: 2}\n");
    }

    #[test]
    fn empty_and_several_documents() {
        assert_eq!(load("").documents().count(), 0);
        let tree = load("a: 1\n---\nb: 2\n");
        let lines: Vec<usize> = tree.documents().map(NodeRef::line).collect();
        assert_eq!(lines, [1, 3]);
        // An explicit document with nothing in it holds a null, as saphyr read it.
        let tree = load("---\n...\n");
        let doc = tree.documents().next().unwrap();
        assert!(matches!(doc.data(), Data::Value(Scalar::Null)));
    }
}
