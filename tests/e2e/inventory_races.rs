//! Writers racing on the inventory table (issue 15, finding 4): a crawl and an event writing
//! the same entity, on the emulator's DynamoDB with its eventually consistent reads lagging.
//! The crawl is the real domain code and the real adapter; only the listing is scripted, so
//! the event lands exactly between a page's listing and its write, where a race would put it.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use maestro_aws::inventory::DynamoInventory;
use maestro_domain::inventory::connection::{ResourceType, Scope};
use maestro_domain::inventory::crawl::{
    CrawlSettings, CrawlState, Cursor, Named, Page, Provider, ProviderError, Source, Target,
    crawl_step, refresh,
};
use maestro_domain::inventory::entity::{Entity, ids};
use maestro_localcloud::LocalCloud;
use maestro_tests::{maestro_template, on_local_cloud_with, reads_may_be_stale};
use serde_json::Value;

/// An account no other test's entities are in, so the summary's count for it is this test's.
const ACCOUNT: &str = "999999999015";
const REGION: &str = "eu-west-1";

fn server(instance: &str, name: &str) -> Entity {
    maestro_domain::inventory::synthetic::instance(ACCOUNT, REGION, instance, name)
}

fn scope() -> Scope {
    Scope {
        connection_id: "races".into(),
        account: ACCOUNT.into(),
        region: REGION.into(),
        resource_type: ResourceType::Instances,
    }
}

fn an_event() -> Source {
    Source::EventRefresh {
        event_id: "race-1".into(),
        event_name: "CreateTags".into(),
        actor: None,
    }
}

/// One page holding `listed`; after listing it, and before the crawl writes it, the event
/// describes `described` and writes it at its time.
struct EventDuringListing<'a> {
    listed: Vec<Entity>,
    inventory: &'a DynamoInventory,
    event: Mutex<Option<(Entity, DateTime<Utc>)>>,
}

#[async_trait]
impl Provider for EventDuringListing<'_> {
    async fn page(
        &self,
        _: &Target,
        _: ResourceType,
        _: Option<&Cursor>,
    ) -> Result<Page, ProviderError> {
        let event = self.event.lock().expect("lock").take();
        if let Some((described, at)) = event {
            refresh(self.inventory, &[described], &scope(), &an_event(), at)
                .await
                .expect("the event's refresh is written");
        }
        Ok(Page {
            entities: self.listed.clone(),
            next: None,
        })
    }

    async fn describe(&self, _: &Target, _: &Named) -> Result<Vec<Entity>, ProviderError> {
        Ok(Vec::new())
    }
}

fn listing<'a>(
    inventory: &'a DynamoInventory,
    listed: Vec<Entity>,
    event: Option<(Entity, DateTime<Utc>)>,
) -> EventDuringListing<'a> {
    EventDuringListing {
        listed,
        inventory,
        event: Mutex::new(event),
    }
}

/// One whole crawl of the scope by `run`, every call at `now`.
async fn crawl(
    inventory: &DynamoInventory,
    provider: &EventDuringListing<'_>,
    run: &str,
    now: DateTime<Utc>,
) -> CrawlState {
    let settings = CrawlSettings {
        pages_per_call: 1,
        gone_after: 2,
        lease: chrono::Duration::minutes(10),
    };
    let target = Target {
        account: ACCOUNT.into(),
        region: REGION.into(),
        role: None,
    };
    let mut state = CrawlState::start(run, scope(), false);
    while !state.done {
        state = crawl_step(
            provider, inventory, inventory, &target, state, &settings, now,
        )
        .await
        .expect("the crawl runs");
    }
    state
}

/// The entities of the account the summary counts.
async fn counted(inventory: &DynamoInventory) -> i64 {
    inventory.summary().await.expect("the summary")["account"]
        .get(ACCOUNT)
        .copied()
        .unwrap_or(0)
}

/// The entities the tag index lists under `Name=<name>`, read from the table itself.
async fn tagged(cloud: &LocalCloud, table: &str, name: &str) -> Vec<String> {
    tagged_at(cloud, table, &format!("TAG#Name={name}")).await
}

#[test]
fn an_event_racing_a_crawl_is_neither_undone_by_it_nor_outweighed() {
    on_local_cloud_with(Some(&maestro_template()), &[], |cloud, stack| async move {
        reads_may_be_stale(cloud, Duration::from_secs(1)).await;
        let stack = stack.expect("the stack");
        let table = stack
            .output("InventoryTableName")
            .expect("the inventory table");
        let inventory = DynamoInventory::new(cloud.sdk_config(), table.to_owned());
        let minutes = chrono::Duration::minutes;
        let t0 = Utc::now();
        let first = crawl(
            &inventory,
            &listing(
                &inventory,
                vec![server("i-a", "a"), server("i-b", "b")],
                None,
            ),
            "r1",
            t0,
        )
        .await;
        assert_eq!(first.counts.created, 2);
        let b = ids::ec2(REGION, ACCOUNT, "instance", "i-b");

        // The crawl listed b before the event renamed it, and writes after it.
        let raced = crawl(
            &inventory,
            &listing(
                &inventory,
                vec![server("i-a", "a"), server("i-b", "listed-before")],
                Some((server("i-b", "renamed"), t0 + minutes(2))),
            ),
            "r2",
            t0 + minutes(1),
        )
        .await;
        assert_eq!(raced.counts.changed, 0, "{raced:?}");
        let stored = inventory.entity(&b).await.expect("read").expect("b");
        assert_eq!(stored["name"], "renamed", "{stored}");
        let (history, _) = inventory.history(&b, 10, None).await.expect("history");
        let kinds: Vec<&Value> = history.iter().map(|r| &r["source"]["kind"]).collect();
        assert_eq!(kinds, ["event-refresh", "scheduled-sync"], "{history:?}");
        assert_eq!(
            tagged(cloud, table, "renamed").await,
            std::slice::from_ref(&b)
        );
        assert!(tagged(cloud, table, "listed-before").await.is_empty());
        assert_eq!(counted(&inventory).await, 2);

        // A crawl misses b; the next one misses it too, but an event saw it meanwhile.
        let missed = crawl(
            &inventory,
            &listing(&inventory, vec![server("i-a", "a")], None),
            "r3",
            t0 + minutes(20),
        )
        .await;
        assert_eq!(missed.counts.missing, 1, "{missed:?}");
        let outweighed = crawl(
            &inventory,
            &listing(
                &inventory,
                vec![server("i-a", "a")],
                Some((server("i-b", "renamed"), t0 + minutes(41))),
            ),
            "r4",
            t0 + minutes(40),
        )
        .await;
        assert_eq!(
            (outweighed.counts.gone, outweighed.counts.missing),
            (0, 0),
            "{outweighed:?}"
        );
        let stored = inventory.entity(&b).await.expect("read").expect("b");
        assert_eq!(stored["active"], true, "{stored}");
        assert_eq!(counted(&inventory).await, 2);

        // Really gone: two complete crawls in a row miss it, and nothing sees it.
        for (run, at) in [("r5", 60), ("r6", 80)] {
            crawl(
                &inventory,
                &listing(&inventory, vec![server("i-a", "a")], None),
                run,
                t0 + minutes(at),
            )
            .await;
        }
        let stored = inventory.entity(&b).await.expect("read").expect("b");
        assert_eq!(stored["active"], false, "{stored}");
        assert_eq!(counted(&inventory).await, 1);
        assert!(
            tagged(cloud, table, "renamed").await.contains(&b),
            "a tombstone keeps its tags"
        );
    });
}

/// A server carrying `count` tags `<prefix>-<n>`.
fn tagged_server(instance: &str, prefix: &str, count: usize) -> Entity {
    let mut entity = server(instance, instance);
    for n in 0..count {
        entity.tags.insert(format!("{prefix}-{n}"), "x".into());
    }
    entity
}

/// The tag index's items for `<prefix>-<n>=x`, n < `count`, that name `id`.
async fn indexed_tags(
    cloud: &LocalCloud,
    table: &str,
    prefix: &str,
    count: usize,
    id: &str,
) -> usize {
    let mut found = 0;
    for n in 0..count {
        if tagged_at(cloud, table, &format!("TAG#{prefix}-{n}=x"))
            .await
            .iter()
            .any(|s| s == id)
        {
            found += 1;
        }
    }
    found
}

async fn tagged_at(cloud: &LocalCloud, table: &str, pk: &str) -> Vec<String> {
    aws_sdk_dynamodb::Client::new(cloud.sdk_config())
        .query()
        .table_name(table)
        .key_condition_expression("PK = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("the tag index is read")
        .items()
        .iter()
        .filter_map(|item| item.get("source")?.as_s().ok().cloned())
        .collect()
}

#[test]
fn an_entity_with_more_index_changes_than_a_transaction_holds_is_indexed_whole() {
    // A transaction takes 100 actions; a change of more tag and relation items than that
    // puts its new items before the transaction and deletes the old ones after it.
    on_local_cloud_with(Some(&maestro_template()), &[], |cloud, stack| async move {
        let stack = stack.expect("the stack");
        let table = stack
            .output("InventoryTableName")
            .expect("the inventory table");
        let inventory = DynamoInventory::new(cloud.sdk_config(), table.to_owned());
        let t0 = Utc::now();
        let id = ids::ec2(REGION, ACCOUNT, "instance", "i-many");
        let created = crawl(
            &inventory,
            &listing(&inventory, vec![tagged_server("i-many", "old", 120)], None),
            "r1",
            t0,
        )
        .await;
        assert_eq!(created.counts.created, 1);
        assert_eq!(indexed_tags(cloud, table, "old", 120, &id).await, 120);
        let changed = crawl(
            &inventory,
            &listing(&inventory, vec![tagged_server("i-many", "new", 120)], None),
            "r2",
            t0 + chrono::Duration::minutes(1),
        )
        .await;
        assert_eq!(changed.counts.changed, 1);
        assert_eq!(indexed_tags(cloud, table, "new", 120, &id).await, 120);
        assert_eq!(indexed_tags(cloud, table, "old", 120, &id).await, 0);
        let (history, _) = inventory.history(&id, 10, None).await.expect("history");
        assert_eq!(history.len(), 2, "{history:?}");
    });
}
