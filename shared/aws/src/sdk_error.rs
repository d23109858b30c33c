//! Turns AWS SDK errors into the domain's [`PortError`], so retry decisions use one rule.

use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use maestro_domain::port::PortError;

/// Error codes after which the same call may succeed: throttling, passing outages, and the
/// `ConflictException` IAM Identity Center returns while another operation is in flight.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalServerException",
    "InternalServerError",
    "InternalError",
    "InternalFailure",
    // Organizations' and Lambda's internal error: "try again later".
    "ServiceException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ConflictException",
];

/// A conditional write's answer: `true` when it wrote, `false` when its condition did not hold
/// (DynamoDB's `ConditionalCheckFailedException`), the error otherwise.
pub fn written<O, E, R>(
    service: &'static str,
    what: &str,
    result: Result<O, SdkError<E, R>>,
) -> Result<bool, PortError>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    match result {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(context))
            if context.err().code() == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(error) => Err(port_error(service, what, error)),
    }
}

pub fn port_error<E, R>(service: &'static str, what: &str, error: SdkError<E, R>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error,
{
    match &error {
        SdkError::ServiceError(context) => {
            let inner = context.err();
            let code = inner.code().unwrap_or("Unknown");
            let detail = format!("{code}: {}", inner.message().unwrap_or("no message"));
            if TRANSIENT_CODES.contains(&code) {
                PortError::Transient { service, detail }
            } else if code.contains("NotFound") || code.starts_with("NoSuch") {
                PortError::NotFound {
                    service,
                    what: what.to_owned(),
                }
            } else {
                PortError::Rejected { service, detail }
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            PortError::Transient {
                service,
                detail: error.to_string(),
            }
        }
        _ => PortError::Rejected {
            service,
            detail: error.to_string(),
        },
    }
}
