//! A function's environment variables, read once at start with every problem reported together.

use std::collections::BTreeMap;
use std::str::FromStr;

use thiserror::Error;

/// The environment a function runs with. On Lambda it is the process environment; the local
/// host gives each in-process function the variables the template declares for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionEnv {
    vars: BTreeMap<String, String>,
}

/// Every variable that was missing or unusable, named in one message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the function's environment is incomplete: {}", .problems.join("; "))]
pub struct EnvError {
    pub problems: Vec<String>,
}

impl FunctionEnv {
    pub fn from_process() -> Self {
        FunctionEnv {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        FunctionEnv {
            vars: vars.into_iter().collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Starts reading variables; [`EnvReader::finish`] reports all problems at once.
    pub fn reader(&self) -> EnvReader<'_> {
        EnvReader {
            env: self,
            problems: Vec::new(),
        }
    }
}

/// Collects the problems of several variables so that one deployment fix addresses them all.
pub struct EnvReader<'a> {
    env: &'a FunctionEnv,
    problems: Vec<String>,
}

impl EnvReader<'_> {
    /// A variable that must be set and not empty; an empty string stands in when it is not,
    /// and [`finish`](Self::finish) fails.
    pub fn required(&mut self, name: &str) -> String {
        match self.env.get(name) {
            Some(value) if !value.trim().is_empty() => value.to_owned(),
            _ => {
                self.problems.push(format!("{name} is not set"));
                String::new()
            }
        }
    }

    /// A variable that must be set and parse as `T`.
    pub fn parsed<T>(&mut self, name: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let raw = self.required(name);
        if raw.is_empty() {
            return None;
        }
        match raw.trim().parse() {
            Ok(value) => Some(value),
            Err(error) => {
                self.problems
                    .push(format!("{name}={raw:?} is not usable: {error}"));
                None
            }
        }
    }

    /// Records a problem found while combining variables (a policy that does not hold, say).
    pub fn problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    pub fn finish(self) -> Result<(), EnvError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(EnvError {
                problems: self.problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_or_bad_variable_is_named_at_once() {
        let env = FunctionEnv::from_vars([
            ("POLLS".to_owned(), "many".to_owned()),
            ("EMPTY".to_owned(), " ".to_owned()),
        ]);
        let mut reader = env.reader();
        reader.required("QUEUE_URL");
        reader.required("EMPTY");
        let polls: Option<u32> = reader.parsed("POLLS");
        assert_eq!(polls, None);
        let error = reader.finish().unwrap_err().to_string();
        assert!(error.contains("QUEUE_URL is not set"), "{error}");
        assert!(error.contains("EMPTY is not set"), "{error}");
        assert!(error.contains("POLLS=\"many\" is not usable"), "{error}");
    }

    #[test]
    fn a_complete_environment_reads_cleanly() {
        let env = FunctionEnv::from_vars([("POLLS".to_owned(), "12".to_owned())]);
        let mut reader = env.reader();
        assert_eq!(reader.parsed::<u32>("POLLS"), Some(12));
        assert!(reader.finish().is_ok());
    }
}
