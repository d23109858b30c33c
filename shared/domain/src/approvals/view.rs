//! Who may read an action or an approval, and what of it: its requester, its approvers and
//! Maestro's operators see it; anyone else is told it does not exist. Where an approver
//! decided from (address and browser) is for the operators' audit only.

use super::request::ApprovalRequest;
use crate::access::Caller;

/// How a caller stands to one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// Maestro's operators: everything.
    Operator,
    /// Its requester or one of its approvers: all but where approvers decided from.
    Party,
}

/// How `caller` stands to an action asked by `requester` and decided by `approvers`, or
/// `None` when they may not see it.
pub fn viewer<'a>(
    caller: &Caller,
    operators: &str,
    requester: &str,
    mut approvers: impl Iterator<Item = &'a str>,
) -> Option<Viewer> {
    if caller.is_operator(operators) {
        return Some(Viewer::Operator);
    }
    let email = caller.email.as_deref()?;
    let party = email.eq_ignore_ascii_case(requester)
        || approvers.any(|approver| approver.eq_ignore_ascii_case(email));
    party.then_some(Viewer::Party)
}

impl ApprovalRequest {
    /// How `caller` stands to this approval.
    pub fn viewer(&self, caller: &Caller, operators: &str) -> Option<Viewer> {
        viewer(
            caller,
            operators,
            &self.requester,
            self.votes.keys().map(String::as_str),
        )
    }

    /// The approval as `viewer` may read it.
    pub fn seen_by(mut self, viewer: Viewer) -> ApprovalRequest {
        if viewer == Viewer::Party {
            for vote in self.votes.values_mut() {
                vote.source_ip = None;
                vote.user_agent = None;
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(email: Option<&str>, teams: &[&str]) -> Caller {
        Caller {
            subject: "s".into(),
            email: email.map(str::to_owned),
            teams: teams.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn only_the_requester_the_approvers_and_operators_see_an_action() {
        let approvers = ["bob@example.com", "carol@example.com"];
        let see = |c: &Caller| viewer(c, "ops", "alice@example.com", approvers.iter().copied());
        assert_eq!(
            see(&caller(Some("Alice@Example.com"), &[])),
            Some(Viewer::Party)
        );
        assert_eq!(
            see(&caller(Some("carol@example.com"), &[])),
            Some(Viewer::Party)
        );
        assert_eq!(see(&caller(None, &["ops"])), Some(Viewer::Operator));
        assert_eq!(
            see(&caller(Some("mallory@example.com"), &["payments"])),
            None
        );
        assert_eq!(see(&caller(None, &["payments"])), None);
    }
}
