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

// ---- a second run of one commit; one compilation ----------------------------------------

/// What the stub commands were asked to do, one line each.
struct Run {
    calls: Vec<String>,
    succeeded: bool,
    imagedefinitions: Option<String>,
}

/// Runs pre_build, build and post_build as CodeBuild does (one bash, a failing command ends
/// the run), with `aws`, `docker`, `make` and `cargo` replaced by stubs that record their
/// arguments. `describe_images` is what the stub `aws ecr describe-images` answers:
/// Ok(digest) or Err(the CLI's error text).
fn run_buildspec(describe_images: Result<&str, &str>) -> Run {
    let spec = buildspec();
    let dir = std::env::temp_dir().join(format!(
        "oponn-buildspec-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos()
    ));
    let bin = dir.join("bin");
    let work = dir.join("work");
    std::fs::create_dir_all(&bin).expect("stub dir");
    std::fs::create_dir_all(work.join("target/release")).expect("work dir");
    std::fs::write(work.join("target/release/oponn"), "binary").expect("binary");
    let calls = dir.join("calls");
    let (answer, status) = match describe_images {
        Ok(digest) => (digest.to_owned(), 0),
        Err(error) => (error.to_owned(), 254),
    };
    let stubs = [
        (
            "aws",
            format!(
                "echo \"aws $*\" >> {calls:?}\n\
                 case \"$*\" in *describe-images*) echo {answer:?}; exit {status};; esac\n\
                 echo token"
            ),
        ),
        (
            "docker",
            format!("echo \"docker $*\" >> {calls:?}; cat > /dev/null"),
        ),
        ("make", format!("echo \"make $*\" >> {calls:?}")),
        (
            "cargo",
            format!(
                "echo \"cargo $*\" >> {calls:?}\n\
                 echo '{{\"target_directory\":\"{}\"}}'",
                work.join("target").display()
            ),
        ),
    ];
    for (name, body) in stubs {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/usr/bin/env bash\n{body}\n")).expect("stub");
        Command::new("chmod")
            .arg("+x")
            .arg(&path)
            .status()
            .expect("chmod");
    }
    let mut script = String::from("set -e\n");
    for phase in ["pre_build", "build", "post_build"] {
        for command in commands(&spec, phase) {
            script.push_str(&command);
            script.push('\n');
        }
    }
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HOME", &dir)
        .env(
            "REPOSITORY_URI",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/oponn-dev",
        )
        .env("CONTAINER_NAME", "oponn")
        .env("CODEBUILD_RESOLVED_SOURCE_VERSION", "4f1d0c9e")
        .env("CODEBUILD_BUILD_SUCCEEDING", "1")
        .env("AWS_DEFAULT_REGION", "eu-west-1")
        .output()
        .expect("bash runs");
    let run = Run {
        calls: std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect(),
        succeeded: output.status.success(),
        imagedefinitions: std::fs::read_to_string(work.join("imagedefinitions.json")).ok(),
    };
    assert!(
        run.succeeded || !run.calls.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
    run
}

fn called(run: &Run, prefix: &str) -> bool {
    run.calls.iter().any(|call| call.starts_with(prefix))
}

#[test]
fn a_commit_whose_tag_is_in_ecr_skips_tests_build_and_push_and_hands_the_same_image_on() {
    let run = run_buildspec(Ok("sha256:0123abcd"));

    assert!(run.succeeded, "{:#?}", run.calls);
    assert!(
        run.calls[0].contains("ecr describe-images --repository-name oponn-dev")
            && run.calls[0].contains("imageTag=4f1d0c9e"),
        "{:#?}",
        run.calls
    );
    for skipped in ["make test", "docker", "cargo"] {
        assert!(!called(&run, skipped), "{skipped}: {:#?}", run.calls);
    }
    let definitions: serde_json::Value =
        serde_json::from_str(run.imagedefinitions.as_deref().expect("written")).expect("JSON");
    assert_eq!(
        definitions[0]["imageUri"],
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/oponn-dev:4f1d0c9e"
    );
}

#[test]
fn a_new_commit_is_tested_then_its_tested_binary_built_into_the_image_and_pushed() {
    let run = run_buildspec(Err(
        "An error occurred (ImageNotFoundException) when calling the DescribeImages operation: \
         The image with imageId {imageTag:'4f1d0c9e'} does not exist within the repository",
    ));

    assert!(run.succeeded, "{:#?}", run.calls);
    let order: Vec<&str> = run
        .calls
        .iter()
        .filter_map(|call| {
            ["make test", "docker login", "docker build", "docker push"]
                .into_iter()
                .find(|prefix| call.starts_with(prefix))
        })
        .collect();
    assert_eq!(
        order,
        ["make test", "docker login", "docker build", "docker push"]
    );
    let build = run
        .calls
        .iter()
        .find(|call| call.starts_with("docker build"))
        .expect("built");
    assert!(
        build.contains("--target prebuilt"),
        "the binary make test compiled, not a second compilation: {build}"
    );
    assert!(run.imagedefinitions.is_some());
}

#[test]
fn an_ecr_error_other_than_not_found_fails_the_build_before_anything_runs() {
    let run = run_buildspec(Err(
        "An error occurred (AccessDeniedException) when calling the DescribeImages operation",
    ));

    assert!(!run.succeeded, "{:#?}", run.calls);
    assert!(!called(&run, "make"), "{:#?}", run.calls);
    assert!(!called(&run, "docker"), "{:#?}", run.calls);
}

#[test]
fn the_dockerfile_pulls_from_ecr_public_and_has_the_stage_the_buildspec_builds() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile");
    let text = std::fs::read_to_string(path).expect("the Dockerfile");
    let stages: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .filter_map(|line| line.split(" AS ").nth(1))
        .collect();
    for line in text.lines().filter(|line| line.starts_with("FROM ")) {
        let image = line.split_whitespace().nth(1).expect("an image");
        assert!(
            image.starts_with("public.ecr.aws/docker/library/") || stages.contains(&image),
            "not from Docker Hub: {line}"
        );
    }
    assert!(
        !text.lines().any(|line| line.starts_with("# syntax=")),
        "a syntax line pulls the frontend from Docker Hub"
    );
    assert!(stages.contains(&"prebuilt"), "{stages:?}");
    // `docker build .` without a target still compiles from source: the last stage.
    assert_eq!(stages.last(), Some(&"from-source"));
    let spec = buildspec();
    let build = commands(&spec, "build");
    assert!(build[position(&build, "docker build")].contains("--target prebuilt"));
    // The binary it copies is where the build phase puts it, inside the Docker context.
    assert!(text.contains("COPY .prebuilt/oponn /usr/local/bin/oponn"));
    assert!(build[position(&build, ".prebuilt/oponn")].contains("/release/oponn"));
}
