//! `buildspec.yml`, parsed: the phases CodeBuild runs, in order, each command valid bash, and
//! the hand-off to the pipeline (`imagedefinitions.json` naming the task's container).

use std::{path::PathBuf, process::Command};

use serde_norway::Value;

fn buildspec() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../buildspec.yml");
    let text = std::fs::read_to_string(path).expect("buildspec.yml exists");
    serde_norway::from_str(&text).expect("buildspec.yml is YAML")
}

fn commands(spec: &Value, phase: &str) -> Vec<String> {
    spec["phases"][phase]["commands"]
        .as_sequence()
        .unwrap_or_else(|| panic!("phase {phase} has commands"))
        .iter()
        .map(|command| command.as_str().expect("a command is text").to_owned())
        .collect()
}

fn position(commands: &[String], needle: &str) -> usize {
    commands
        .iter()
        .position(|command| command.contains(needle))
        .unwrap_or_else(|| panic!("no command runs {needle:?}: {commands:#?}"))
}

#[test]
fn the_buildspec_is_version_0_2_with_bash() {
    let spec = buildspec();
    assert_eq!(spec["version"].as_f64(), Some(0.2));
    assert_eq!(spec["env"]["shell"].as_str(), Some("bash"));
}

#[test]
fn tests_run_before_the_image_is_built_and_pushed() {
    let spec = buildspec();
    let pre_build = commands(&spec, "pre_build");
    let build = commands(&spec, "build");
    let post_build = commands(&spec, "post_build");
    position(&pre_build, "make test");
    assert!(position(&pre_build, "make test") < position(&pre_build, "docker login"));
    position(&build, "docker build");
    // post_build runs even after a failed build: it must stop before pushing.
    assert!(
        position(&post_build, "CODEBUILD_BUILD_SUCCEEDING") < position(&post_build, "docker push")
    );
}

#[test]
fn the_image_is_tagged_with_the_commit_it_was_built_from() {
    let spec = buildspec();
    let pre_build = commands(&spec, "pre_build");
    let tag = &pre_build[position(&pre_build, "IMAGE_TAG=")];
    assert!(tag.contains("$CODEBUILD_RESOLVED_SOURCE_VERSION"), "{tag}");
    let build = commands(&spec, "build");
    assert!(build[position(&build, "docker build")].contains("$REPOSITORY_URI:$IMAGE_TAG"));
    let post_build = commands(&spec, "post_build");
    assert!(post_build[position(&post_build, "docker push")].contains("$REPOSITORY_URI:$IMAGE_TAG"));
}

#[test]
fn imagedefinitions_names_the_container_and_is_the_only_artifact() {
    let spec = buildspec();
    let post_build = commands(&spec, "post_build");
    let write = &post_build[position(&post_build, "> imagedefinitions.json")];
    assert!(write.contains("$CONTAINER_NAME") && write.contains("$REPOSITORY_URI:$IMAGE_TAG"));
    let files = spec["artifacts"]["files"]
        .as_sequence()
        .expect("artifact files");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].as_str(), Some("imagedefinitions.json"));
}

#[test]
fn the_imagedefinitions_command_writes_valid_json() {
    let spec = buildspec();
    let post_build = commands(&spec, "post_build");
    let write = post_build[position(&post_build, "> imagedefinitions.json")]
        .replace("> imagedefinitions.json", "");
    let output = Command::new("bash")
        .arg("-c")
        .arg(write)
        .env("CONTAINER_NAME", "oponn")
        .env(
            "REPOSITORY_URI",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/oponn-dev",
        )
        .env("IMAGE_TAG", "0123abc")
        .output()
        .expect("bash runs");
    let definitions: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the command prints JSON");
    assert_eq!(
        definitions,
        serde_json::json!([{
            "name": "oponn",
            "imageUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/oponn-dev:0123abc"
        }])
    );
}

#[test]
fn every_command_is_valid_bash() {
    let spec = buildspec();
    for phase in ["install", "pre_build", "build", "post_build"] {
        for command in commands(&spec, phase) {
            let status = Command::new("bash")
                .args(["-n", "-c", &command])
                .status()
                .expect("bash runs");
            assert!(status.success(), "{phase}: {command}");
        }
    }
}
