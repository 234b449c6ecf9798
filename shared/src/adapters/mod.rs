//! Adapters: clocks, the in-memory store for unit tests, the embedded store and in-process
//! queue of local mode, and the HTTP and outbox transports. The `aws` feature adds the
//! DynamoDB, SQS and SSM adapters of the Lambda functions.

#[cfg(feature = "aws")]
pub mod aws;
pub mod clock;
#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod embedded;
pub mod http;
pub mod local_queue;
pub mod memory;
pub mod outbox;
#[cfg(feature = "aws")]
pub mod sqs;
#[cfg(feature = "aws")]
pub mod sqs_consumer;
#[cfg(feature = "aws")]
pub mod ssm;
