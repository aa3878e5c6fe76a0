//! Faults injected at named points of the pipeline's steps, for the lifecycle's model-based
//! test (`hiring/tests/lifecycle_model.rs`). Only a build with the feature `fault-injection`
//! can arm them, and only inside [`armed`]'s future (a task-local plan, so tests running side
//! by side never see each other's faults); in every other build each point is a no-op.

use sqlx::PgPool;
use sqlx::pool::PoolConnection;

/// Where a step can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Point {
    /// A validation has stored its rejects and published its rejects file, and is about to
    /// record its report and commit.
    ValidationBeforeCommit,
    /// A load has written its rows and published its Parquet file, and is about to record its
    /// counts and commit.
    LoadBeforeCommit,
}

/// What happens there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The store answers a transient error (a connection reset): the step fails, retryably.
    Retryable,
    /// The step's database connection is killed (`pg_terminate_backend`) before its COMMIT.
    KilledConnection,
    /// The step's process dies: no clean-up code runs, its connection ends.
    Crash,
}

#[cfg(feature = "fault-injection")]
tokio::task_local! {
    static PLAN: std::cell::RefCell<Vec<(Point, Fault)>>;
}

/// Runs `future` with the faults of `plan` armed: each fires once, at its point, in order.
#[cfg(feature = "fault-injection")]
pub async fn armed<F: std::future::Future>(plan: Vec<(Point, Fault)>, future: F) -> F::Output {
    PLAN.scope(std::cell::RefCell::new(plan), future).await
}

/// The fault armed at `point`, taken (it fires once); `None` in a build without the feature.
pub(crate) fn at(point: Point) -> Option<Fault> {
    #[cfg(feature = "fault-injection")]
    {
        PLAN.try_with(|plan| {
            let mut plan = plan.borrow_mut();
            let index = plan.iter().position(|(armed, _)| *armed == point)?;
            Some(plan.remove(index).1)
        })
        .ok()
        .flatten()
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = point;
        None
    }
}

/// The error a transient store failure gives ([`Fault::Retryable`]).
pub(crate) fn transient_store_error() -> crate::error::Error {
    crate::error::Error::Store {
        location: "injected".to_owned(),
        source: object_store::Error::Generic {
            store: "injected",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        },
    }
}

/// Acts out a crash of the step holding `connection`: its server process is ended (waiting
/// until it is gone, so its locks are free) and the connection is dropped, unused again.
pub(crate) async fn crash(pool: &PgPool, mut connection: PoolConnection<sqlx::Postgres>) {
    let pid: Option<i32> = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *connection).await.ok();
    drop(connection.detach());
    if let Some(pid) = pid {
        let _ = sqlx::query("SELECT pg_terminate_backend($1, 30000)").bind(pid).execute(pool).await;
    }
}
