pub mod backoff;
pub mod health;
pub mod hooks;
pub mod process;
pub mod supervisor;
