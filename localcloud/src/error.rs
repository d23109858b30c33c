use thiserror::Error;

/// Why the local cloud could not start, build the stack, or serve a call.
#[derive(Debug, Error)]
pub enum LocalCloudError {
    /// The template asks for something the local cloud cannot build; the message names where.
    #[error("template: {0}")]
    Template(String),
    /// The emulator (moto launcher) did not start or stopped answering.
    #[error("emulator: {0}")]
    Emulator(String),
    /// An AWS call to the emulator failed while building the stack.
    #[error("building {resource}: {detail}")]
    Build { resource: String, detail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An AWS SDK error with its whole chain of causes (the service's code and message included).
pub fn sdk_error(error: impl std::error::Error) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(error).to_string()
}

impl LocalCloudError {
    pub fn build(resource: &str, detail: impl std::fmt::Display) -> Self {
        LocalCloudError::Build {
            resource: resource.to_owned(),
            detail: detail.to_string(),
        }
    }
}
