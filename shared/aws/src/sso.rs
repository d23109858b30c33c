//! The SSO sync's dependencies, built once per cold start from the environment the template
//! gives `SsoReconcileFunction` and `SsoApiFunction`.

use std::sync::Arc;

use maestro_domain::sso::assignment_monitor::InstanceArn;
use maestro_domain::sso::model::SsoModel;
use maestro_domain::sso::reconcile::Ports;
use maestro_domain::sso::snapshot::Clock;

use crate::SdkConfig;
use crate::env::{EnvError, FunctionEnv};
use crate::identity_center::IdentityCenter;
use crate::organizations::OrganizationsReader;
use crate::plan_store::DynamoPlanStore;
use crate::queues::JsonQueue;
use crate::quota::DynamoQuota;
use crate::snapshot::DynamoSnapshotStore;
use crate::step_functions::{
    ApprovalWorkflowStarter, NoApprovalWorkflow, NoReconcileWorkflow, ReconcileWorkflowStarter,
};

pub struct SsoServices {
    pub model: SsoModel,
    pub organisation: OrganizationsReader,
    pub identity_center: IdentityCenter,
    pub store: DynamoPlanStore,
    pub snapshot: DynamoSnapshotStore,
    pub changes: JsonQueue,
    /// The full runs' state machine (`SSO_RECONCILE_STATE_MACHINE_ARN`), for the functions
    /// that begin full runs.
    pub workflow: Option<ReconcileWorkflowStarter>,
    /// The approval workflow held deletes go to (`APPROVAL_STATE_MACHINE_ARN`, optional for
    /// functions that never hold deletes).
    pub approvals: Option<ApprovalWorkflowStarter>,
}

impl SsoServices {
    /// Reads `SSO_MODEL_CONFIG` (JSON; empty means the defaults), `SSO_INSTANCE_ARN`,
    /// `IDENTITY_STORE_ID`, `SSO_PLANS_TABLE`, `SSO_CHANGES_QUEUE_URL`, `QUOTA_TABLE`, and
    /// `APPROVAL_STATE_MACHINE_ARN` and `SSO_RECONCILE_STATE_MACHINE_ARN` if they are set.
    pub fn from_parts(config: &SdkConfig, env: &FunctionEnv) -> Result<Self, EnvError> {
        let mut vars = env.reader();
        let model = SsoModel::from_json(env.get("SSO_MODEL_CONFIG").unwrap_or_default())
            .map_err(|e| vars.problem(format!("SSO_MODEL_CONFIG is invalid: {e}")))
            .ok();
        let instance_arn = InstanceArn::try_from(vars.required("SSO_INSTANCE_ARN"))
            .map_err(|e| vars.problem(format!("SSO_INSTANCE_ARN: {e}")))
            .ok();
        let identity_store_id = vars.required("IDENTITY_STORE_ID");
        let table = vars.required("SSO_PLANS_TABLE");
        let queue_url = vars.required("SSO_CHANGES_QUEUE_URL");
        let quota_table = vars.required("QUOTA_TABLE");
        let approvals = env
            .get("APPROVAL_STATE_MACHINE_ARN")
            .filter(|arn| !arn.is_empty())
            .map(|arn| ApprovalWorkflowStarter::new(config, arn.to_owned()));
        let workflow = env
            .get("SSO_RECONCILE_STATE_MACHINE_ARN")
            .filter(|arn| !arn.is_empty())
            .map(|arn| ReconcileWorkflowStarter::new(config, arn.to_owned()));
        vars.finish()?;
        let (Some(model), Some(instance_arn)) = (model, instance_arn) else {
            return Err(EnvError {
                problems: vec!["the SSO configuration is incomplete".into()],
            });
        };
        Ok(SsoServices {
            model,
            organisation: OrganizationsReader::new(config),
            identity_center: IdentityCenter::new(config, instance_arn, identity_store_id)
                .with_call_rate(Arc::new(DynamoQuota::for_sso_admin_readers(
                    config,
                    quota_table,
                ))),
            store: DynamoPlanStore::new(config, table.clone()),
            snapshot: DynamoSnapshotStore::new(config, table),
            changes: JsonQueue::new(config, queue_url),
            workflow,
            approvals,
        })
    }

    pub fn ports(&self) -> Ports<'_> {
        Ports {
            organisation: &self.organisation,
            identity_center: &self.identity_center,
            clock: &SystemClock,
            snapshot: &self.snapshot,
            store: &self.store,
            lease: &self.store,
            workflow: match &self.workflow {
                Some(starter) => starter,
                None => &NoReconcileWorkflow,
            },
            changes: &self.changes,
            approvals: match &self.approvals {
                Some(starter) => starter,
                None => &NoApprovalWorkflow,
            },
            deletes: &self.store,
            latest_plans: &self.store,
        }
    }
}

/// The time as the machine tells it.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}
