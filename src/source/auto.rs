//! What `fetchStrategy: auto` reads a group's next poll with. Pure: it only counts calls, so
//! that the choice is unit-tested without AWS.
//!
//! A poll costs ⌈N / 20⌉ BatchGetSecretValue calls, or the listing's pages (100 secrets each,
//! though the name filter may match more secrets than the group has) plus one GetSecretValue
//! for each secret the listing cannot settle: one never written, or one whose version moved.
//! The listing fetches no value, so it is also the cheaper one in CPU (the SDK parses and
//! copies every value a batch returns, changed or not). `auto` takes the one with fewer calls
//! by what the last polls saw, and a tie to the batch (values in hand, no listing lag); a
//! denied call is never tried again.

use super::secrets_manager::{BATCH_MAX, LIST_PAGE};

/// One poll's reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Batch,
    List,
    Get,
}

/// The state of one `auto` group.
#[derive(Debug, Clone)]
pub struct AutoChoice {
    members: usize,
    batch_allowed: bool,
    list_allowed: bool,
    /// What the last listing returned; before one, the group's own size.
    listed: usize,
}

// === impl AutoChoice ===

impl AutoChoice {
    pub fn new(members: usize) -> Self {
        Self {
            members,
            batch_allowed: true,
            list_allowed: true,
            listed: members,
        }
    }

    /// The reading of the next poll, when `unsettled` members would each need a
    /// GetSecretValue after a listing (none written yet, or failing at the last poll).
    pub fn next(&self, unsettled: usize) -> Read {
        let other = self.other();
        if self.list_allowed && self.list_calls(unsettled) < self.calls(other) {
            Read::List
        } else {
            other
        }
    }

    /// The reading when not listing: batches if allowed, else one read per secret.
    fn other(&self) -> Read {
        if self.batch_allowed {
            Read::Batch
        } else {
            Read::Get
        }
    }

    fn calls(&self, read: Read) -> usize {
        match read {
            Read::Batch => self.batch_calls(),
            Read::List => self.list_calls(0),
            Read::Get => self.members,
        }
    }

    /// Calls of a poll by listing: its pages, then a GetSecretValue per unsettled member.
    pub fn list_calls(&self, unsettled: usize) -> usize {
        self.listed.div_ceil(LIST_PAGE).max(1) + unsettled.min(self.members)
    }

    pub fn batch_calls(&self) -> usize {
        self.members.div_ceil(BATCH_MAX).max(1)
    }

    /// A listing returned `entries` secrets. `true` the first time that makes the listing
    /// the dearer reading even with nothing to fetch after it (it matched so many more
    /// secrets than the group that batches, or when they are denied one read per secret,
    /// cost fewer calls): the group leaves it for good, and logs it once.
    pub fn listed(&mut self, entries: usize) -> bool {
        self.listed = entries;
        let dearer = self.list_allowed && self.list_calls(0) > self.calls(self.other());
        if dearer {
            self.list_allowed = false;
        }
        dearer
    }

    /// The reading was refused (AccessDenied); `true` the first time, for the one log line.
    pub fn denied(&mut self, read: Read) -> bool {
        let allowed = match read {
            Read::Batch => &mut self.batch_allowed,
            Read::List => &mut self.list_allowed,
            Read::Get => return false,
        };
        std::mem::replace(allowed, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_poll_batches_and_the_unchanged_ones_after_it_list() {
        let auto = AutoChoice::new(1_000);
        // Nothing written: 10 pages + 1,000 reads against 50 batches.
        assert_eq!(auto.next(1_000), Read::Batch);
        assert_eq!(auto.next(0), Read::List);
        // One failing secret costs its own read after the listing: still far cheaper.
        assert_eq!(auto.next(1), Read::List);
        // Half the group failing: 10 + 500 reads, dearer than 50 batches.
        assert_eq!(auto.next(500), Read::Batch);
        assert_eq!(auto.list_calls(0), 10);
        assert_eq!(auto.batch_calls(), 50);
    }

    #[test]
    fn a_small_group_batches_on_a_tie() {
        for n in [2, 10, 20] {
            assert_eq!(AutoChoice::new(n).next(0), Read::Batch, "{n}");
        }
        // 21 secrets: two batches against one page.
        assert_eq!(AutoChoice::new(21).next(0), Read::List);
    }

    #[test]
    fn a_listing_that_matches_far_more_than_the_group_turns_it_to_batches_once() {
        let mut auto = AutoChoice::new(100);
        assert_eq!(auto.next(0), Read::List);
        // 100 of its own among 450 listed: 5 pages against 5 batches, a tie stays listed.
        assert!(!auto.listed(450));
        assert_eq!(auto.next(0), Read::Batch, "a tie batches");
        let mut auto = AutoChoice::new(100);
        assert!(!auto.listed(200));
        assert_eq!(auto.next(0), Read::List);
        // 50,000 in the account, no name filter: 500 pages against 5 batches.
        assert!(auto.listed(50_000));
        assert_eq!(auto.next(0), Read::Batch);
        assert!(!auto.listed(50_000), "switched once");
        assert_eq!(auto.next(0), Read::Batch);
    }

    #[test]
    fn denials_fall_back_to_the_next_cheapest_reading_for_good() {
        let mut auto = AutoChoice::new(1_000);
        assert!(auto.denied(Read::List));
        assert!(!auto.denied(Read::List), "reported once");
        assert_eq!(auto.next(0), Read::Batch);
        assert!(auto.denied(Read::Batch));
        assert_eq!(auto.next(0), Read::Get);
        assert_eq!(auto.next(1_000), Read::Get);

        let mut auto = AutoChoice::new(1_000);
        assert!(auto.denied(Read::Batch));
        // 10 pages + 1,000 reads against 1,000 reads: a tie reads each one.
        assert_eq!(auto.next(1_000), Read::Get);
        assert_eq!(auto.next(0), Read::List);
        assert!(
            !auto.listed(90_000),
            "900 pages are still fewer than 1,000 reads"
        );
        assert!(auto.listed(1_000_000));
        assert_eq!(auto.next(0), Read::Get);
        assert!(!auto.denied(Read::Get));
    }
}
