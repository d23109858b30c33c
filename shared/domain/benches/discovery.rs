//! Discovery's own work for one scope of 100,000 resources, as the crawler does it: pages of
//! described resources translated into entities, set against the stored hashes, and turned
//! into writes; then the scope concluded against its whole manifest. Three crawls: the first
//! (everything created), a steady one (nothing changed), and one where 1% changed. The store
//! answers from memory built before the measurement, as DynamoDB would answer over the
//! network, so the figures are the Lambda's CPU and heap, not the store's.
//!
//! Prints resources per second and the peak heap a crawl call and the conclusion add. Run
//! with `cargo bench -p maestro-domain --bench discovery`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;
use maestro_domain::inventory::changes::{Known, Manifest};
use maestro_domain::inventory::connection::{ResourceType, Scope};
use maestro_domain::inventory::crawl::{
    InventoryStore, Refused, Source, Stored, StoredContent, Write, refresh_writes,
};
use maestro_domain::inventory::entity::{
    Described, Details, Entity, Labels, Placement, Relation, RelationKind, Server, ids,
};
use maestro_domain::port::PortError;

#[path = "support/peak_heap.rs"]
mod peak_heap;

use peak_heap::{PeakAllocator, live, mib, peak_above, reset_peak};

#[global_allocator]
static ALLOCATOR: PeakAllocator = PeakAllocator;

const RESOURCES: usize = 100_000;
/// EC2's largest page.
const PAGE: usize = 1_000;
const ACCOUNT: &str = "111111111111";
const REGION: &str = "eu-west-1";

/// What a describe call hands the translator for one instance: the fields an SDK `Instance`
/// carries that the entity keeps.
#[derive(Clone)]
struct RawInstance {
    id: String,
    tags: Vec<(String, String)>,
    subnet: String,
    vpc: String,
    groups: Vec<String>,
    volumes: Vec<String>,
    image: String,
    private_ip: String,
}

fn raw(i: usize, generation: usize) -> RawInstance {
    RawInstance {
        id: format!("i-{i:017x}"),
        tags: vec![
            ("Name".into(), format!("web-{i}")),
            (
                "Environment".into(),
                ["production", "staging", "development"][i % 3].into(),
            ),
            ("Role".into(), "web".into()),
            ("CostCentre".into(), format!("cc-{}", i % 40)),
            ("Revision".into(), generation.to_string()),
        ],
        subnet: format!("subnet-{:017x}", i % 300),
        vpc: format!("vpc-{:017x}", i % 30),
        groups: vec![
            format!("sg-{:017x}", i % 500),
            format!("sg-{:017x}", 1 + i % 500),
        ],
        volumes: vec![
            format!("vol-{i:017x}"),
            format!("vol-{:017x}", i + RESOURCES),
        ],
        image: format!("ami-{:017x}", i % 50),
        private_ip: format!("10.{}.{}.{}", i % 250, (i / 250) % 250, i % 200),
    }
}

fn translate(raw: &RawInstance, at: &Placement<'_>) -> Entity {
    let relation = |kind, resource: &str, id: &str| Relation {
        kind,
        target: ids::ec2(REGION, ACCOUNT, resource, id),
    };
    let mut relations = vec![
        relation(RelationKind::Subnet, "subnet", &raw.subnet),
        relation(RelationKind::Vpc, "vpc", &raw.vpc),
        relation(RelationKind::Image, "image", &raw.image),
    ];
    relations.extend(
        raw.groups
            .iter()
            .map(|g| relation(RelationKind::SecurityGroup, "security-group", g)),
    );
    relations.extend(
        raw.volumes
            .iter()
            .map(|v| relation(RelationKind::AttachedVolume, "volume", v)),
    );
    Entity::new(
        at,
        Described {
            id: ids::ec2(REGION, ACCOUNT, "instance", &raw.id),
            provider_type: "AWS::EC2::Instance",
            zone: Some(format!("{REGION}a")),
            tags: raw.tags.iter().cloned().collect(),
            status: Some("running".into()),
            active: true,
            created_at: None,
            details: Details::Server(Server {
                instance_id: raw.id.clone(),
                instance_type: Some("m7g.large".into()),
                image_id: Some(raw.image.clone()),
                vpc_id: Some(raw.vpc.clone()),
                subnet_id: Some(raw.subnet.clone()),
                private_ip: Some(raw.private_ip.clone()),
                public_ip: None,
                key_name: Some("ops".into()),
                platform: None,
                architecture: Some("arm64".into()),
            }),
            relations,
        },
    )
}

/// DynamoDB, answered from memory prepared before the measurement.
struct Remote {
    stored: BTreeMap<String, Stored>,
    manifest: Manifest,
    seen: BTreeSet<String>,
}

#[async_trait]
impl InventoryStore for Remote {
    async fn known(&self, ids: &[String]) -> Result<BTreeMap<String, Stored>, PortError> {
        Ok(ids
            .iter()
            .filter_map(|id| self.stored.get(id).map(|s| (id.clone(), s.clone())))
            .collect())
    }
    async fn write(&self, _: Vec<Write>) -> Result<Refused, PortError> {
        Ok(Refused::new())
    }
    async fn record_seen(&self, _: &str, _: &Scope, _: u32, _: &[String]) -> Result<(), PortError> {
        Ok(())
    }
    async fn seen(&self, _: &str, _: &Scope) -> Result<BTreeSet<String>, PortError> {
        Ok(self.seen.clone())
    }
    async fn manifest(&self, _: &Scope) -> Result<Manifest, PortError> {
        Ok(self.manifest.clone())
    }
}

fn scope() -> Scope {
    Scope {
        connection_id: "bench".into(),
        account: ACCOUNT.into(),
        region: REGION.into(),
        resource_type: ResourceType::Instances,
    }
}

struct Crawl {
    seconds: f64,
    created: u64,
    changed: u64,
    writes: usize,
    peak_per_page: usize,
}

async fn crawl(raws: &[RawInstance], remote: &Remote) -> (Crawl, Vec<Entity>) {
    let labels = Labels::default();
    let at = Placement {
        account: ACCOUNT,
        region: REGION,
        labels: &labels,
    };
    let source = Source::ScheduledSync {
        run: "bench".into(),
    };
    let scope = scope();
    let mut result = Crawl {
        seconds: 0.0,
        created: 0,
        changed: 0,
        writes: 0,
        peak_per_page: 0,
    };
    let mut kept = Vec::new();
    let started = Instant::now();
    for page in raws.chunks(PAGE) {
        let baseline = reset_peak();
        let entities: Vec<Entity> = page.iter().map(|r| translate(r, &at)).collect();
        let (writes, counts) = refresh_writes(remote, &entities, &scope, &source, Utc::now())
            .await
            .expect("the diff runs");
        result.peak_per_page = result.peak_per_page.max(peak_above(baseline));
        result.created += counts.created;
        result.changed += counts.changed;
        result.writes += writes.len();
        kept.extend(entities);
    }
    result.seconds = started.elapsed().as_secs_f64();
    (result, kept)
}

fn report(label: &str, crawl: &Crawl) {
    println!(
        "{label}: {:.0} resources/s ({:.2} s for {RESOURCES}); created {}, changed {}, writes {}; peak heap added per page of {PAGE}: {:.1} MiB",
        RESOURCES as f64 / crawl.seconds,
        crawl.seconds,
        crawl.created,
        crawl.changed,
        crawl.writes,
        mib(crawl.peak_per_page),
    );
}

fn remote_of(entities: &[Entity]) -> Remote {
    let mut stored = BTreeMap::new();
    let mut manifest = Manifest::new();
    for entity in entities {
        let content = serde_json::to_value(entity).expect("serialises");
        let known = Known {
            hash: entity.content_hash(),
            misses: 0,
            missed_by: None,
        };
        manifest.insert(entity.id.clone(), known.clone());
        stored.insert(
            entity.id.clone(),
            Stored {
                known,
                content: StoredContent::of(&content),
                observed_at: None,
            },
        );
    }
    let seen = manifest.keys().cloned().collect();
    Remote {
        stored,
        manifest,
        seen,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let raws: Vec<RawInstance> = (0..RESOURCES).map(|i| raw(i, 0)).collect();
    println!(
        "input: {RESOURCES} described instances, {:.1} MiB of heap",
        mib(live())
    );

    let empty = Remote {
        stored: BTreeMap::new(),
        manifest: Manifest::new(),
        seen: BTreeSet::new(),
    };
    let (first, entities) = crawl(&raws, &empty).await;
    report("first crawl (everything created)", &first);

    let remote = remote_of(&entities);
    drop(entities);
    let (steady, _) = crawl(&raws, &remote).await;
    report("steady crawl (nothing changed)", &steady);

    let touched: Vec<RawInstance> = (0..RESOURCES)
        .map(|i| raw(i, usize::from(i % 100 == 0)))
        .collect();
    let (some, _) = crawl(&touched, &remote).await;
    report("crawl with 1% changed", &some);

    // The last call of a crawl holds the scope's whole manifest and the ids the run saw.
    let baseline = reset_peak();
    let started = Instant::now();
    let manifest = remote.manifest(&scope()).await.expect("manifest");
    let seen = remote.seen("bench", &scope()).await.expect("seen");
    let conclusion = maestro_domain::inventory::changes::conclude(&manifest, &seen, 2);
    println!(
        "conclusion over {} manifest entries: {:.0} ms, peak heap added {:.1} MiB, gone {}",
        manifest.len(),
        started.elapsed().as_secs_f64() * 1e3,
        mib(peak_above(baseline)),
        conclusion.gone.len(),
    );
}
