//! How approvers' votes add up: a quorum of approvals approves, any rejection rejects.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Vote {
    Pending,
    Approve,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Tally {
    /// Not decided yet: more approvals are needed and no one rejected.
    Pending {
        approvals: usize,
        needed: usize,
    },
    Approved,
    Rejected,
}

/// The outcome of `votes` under a quorum of `quorum` approvals.
pub fn tally(votes: &[Vote], quorum: usize) -> Tally {
    if votes.contains(&Vote::Reject) {
        return Tally::Rejected;
    }
    let approvals = votes.iter().filter(|v| **v == Vote::Approve).count();
    if approvals >= quorum {
        Tally::Approved
    } else {
        Tally::Pending {
            approvals,
            needed: quorum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Vote::*;

    #[test]
    fn two_of_three_approves_once_two_approve() {
        assert_eq!(
            tally(&[Approve, Pending, Pending], 2),
            Tally::Pending {
                approvals: 1,
                needed: 2
            }
        );
        assert_eq!(tally(&[Approve, Pending, Approve], 2), Tally::Approved);
    }

    #[test]
    fn one_reject_ends_it_whatever_the_approvals() {
        assert_eq!(tally(&[Approve, Reject, Approve], 2), Tally::Rejected);
        assert_eq!(tally(&[Reject, Pending, Pending], 2), Tally::Rejected);
    }
}
