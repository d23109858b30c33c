//! Every function in the template has sample events in `events/<crate>/`, and each parses as
//! the function's own input type.

use std::path::PathBuf;

use maestro_localcloud::functions::registration_for;
use maestro_localcloud::moto::repository_root;
use maestro_tests::maestro_template;

fn events_dir() -> PathBuf {
    repository_root().join("events")
}

#[test]
fn every_function_has_sample_events_that_parse_as_its_input() {
    let template = maestro_template();
    let mut functions = 0;
    for (logical_id, resource) in template.resources() {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        functions += 1;
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{logical_id} names its crate"));
        let registration = registration_for(binary)
            .unwrap_or_else(|| panic!("{logical_id}: the local host knows {binary}"));
        let dir = events_dir().join(binary);
        let samples: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{logical_id} has sample events in {}: {e}", dir.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        assert!(
            !samples.is_empty(),
            "{logical_id} has at least one sample event"
        );
        for sample in samples {
            let text = std::fs::read_to_string(&sample).unwrap();
            let json: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is JSON: {e}", sample.display()));
            if let Err(e) = (registration.check_sample)(&json) {
                panic!("{} is not an input of {logical_id}: {e}", sample.display());
            }
        }
    }
    assert!(functions >= 2, "the template declares Maestro's functions");
}

#[test]
fn every_sample_event_folder_belongs_to_a_function_of_the_template() {
    let template = maestro_template();
    let binaries: Vec<&str> = template
        .resources()
        .filter_map(|(_, r)| r["Metadata"]["BuildProperties"]["Binary"].as_str())
        .collect();
    for entry in std::fs::read_dir(events_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            binaries.contains(&name.as_str()),
            "events/{name} belongs to no function of the template"
        );
    }
}
