//! The properties of the infrastructure that matter, asserted on the templates themselves
//! (cfn-lint checks they are valid CloudFormation, cfn-guard what must never ship; these check
//! that they build *this* service): the health check path, the listener's target, the capacity
//! provider, the pipeline's trigger, IAM, secrets, the wiring between stacks, and the buildspec
//! and Dockerfile the pipeline runs.

use std::{collections::BTreeSet, path::PathBuf};

use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template(name: &str) -> Value {
    let path = root().join("infra-templates").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const TEMPLATES: [&str; 4] = [
    "network.yaml",
    "cluster.yaml",
    "service.yaml",
    "pipeline.yaml",
];

fn resource<'a>(template: &'a Value, name: &str) -> &'a Value {
    let found = &template["Resources"][name];
    assert!(!found.is_null(), "no resource {name}");
    found
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> Vec<&'a Value> {
    template["Resources"]
        .as_mapping()
        .expect("Resources")
        .values()
        .filter(|r| r["Type"] == kind)
        .collect()
}

/// `!Ref X` as written in the template.
fn is_ref(value: &Value, target: &str) -> bool {
    matches!(value, Value::Tagged(tagged) if tagged.tag == "!Ref" && tagged.value == target)
}

/// Every value in a tree, depth first.
fn walk<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(value);
    match value {
        Value::Sequence(items) => items.iter().for_each(|v| walk(v, out)),
        Value::Mapping(map) => map.values().for_each(|v| walk(v, out)),
        Value::Tagged(tagged) => walk(&tagged.value, out),
        _ => {}
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_target_group_health_checks_healthz() {
    let service = template("service.yaml");
    let group = &resource(&service, "TargetGroup")["Properties"];
    assert_eq!(group["HealthCheckPath"], "/healthz");
    assert_eq!(
        group["HealthCheckPort"], "traffic-port",
        "tasks use dynamic host ports"
    );
    assert_eq!(group["Matcher"]["HttpCode"], "200");
}

#[test]
fn the_listener_forwards_to_the_target_group_the_service_registers_in() {
    let service = template("service.yaml");
    let action = &resource(&service, "Listener")["Properties"]["DefaultActions"][0];
    assert_eq!(action["Type"], "forward");
    assert!(is_ref(&action["TargetGroupArn"], "TargetGroup"));
    let balanced = &resource(&service, "Service")["Properties"]["LoadBalancers"][0];
    assert!(is_ref(&balanced["TargetGroupArn"], "TargetGroup"));
    assert_eq!(balanced["ContainerPort"], 8080);
}

#[test]
fn the_capacity_provider_is_attached_to_the_cluster_and_used_by_the_service() {
    let cluster = template("cluster.yaml");
    let associations = &resource(&cluster, "ClusterCapacityProviders")["Properties"];
    assert!(is_ref(&associations["Cluster"], "Cluster"));
    assert!(is_ref(
        &associations["CapacityProviders"][0],
        "CapacityProvider"
    ));
    let provider =
        &resource(&cluster, "CapacityProvider")["Properties"]["AutoScalingGroupProvider"];
    assert!(is_ref(&provider["AutoScalingGroupArn"], "AutoScalingGroup"));
    assert_eq!(provider["ManagedScaling"]["Status"], "ENABLED");
    assert_eq!(
        resource(&cluster, "AutoScalingGroup")["Properties"]["NewInstancesProtectedFromScaleIn"],
        true,
        "managed termination protection needs it"
    );
    let ami = &cluster["Parameters"]["EcsAmiId"];
    assert_eq!(
        ami["Type"],
        "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    );
    assert!(ami["Default"]
        .as_str()
        .unwrap()
        .starts_with("/aws/service/ecs/optimized-ami/"));

    let service = template("service.yaml");
    let strategy = &resource(&service, "Service")["Properties"]["CapacityProviderStrategy"][0];
    assert!(format!("{:?}", strategy["CapacityProvider"]).contains("capacity-provider"));
}

#[test]
fn the_service_rolls_back_a_failed_deployment_and_drains_on_sigterm() {
    let service = template("service.yaml");
    let deployment = &resource(&service, "Service")["Properties"]["DeploymentConfiguration"];
    assert_eq!(deployment["DeploymentCircuitBreaker"]["Enable"], true);
    assert_eq!(deployment["DeploymentCircuitBreaker"]["Rollback"], true);
    let container = &resource(&service, "TaskDefinition")["Properties"]["ContainerDefinitions"][0];
    assert!(container["StopTimeout"].as_u64().unwrap() >= 15);
}

#[test]
fn the_pipeline_builds_and_deploys_every_push_to_main() {
    let pipeline = template("pipeline.yaml");
    assert_eq!(pipeline["Parameters"]["Branch"]["Default"], "main");
    let properties = &resource(&pipeline, "Pipeline")["Properties"];
    let stages: Vec<&str> = properties["Stages"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["Source", "Build", "Deploy"]);
    let source = &properties["Stages"][0]["Actions"][0];
    assert_eq!(
        source["ActionTypeId"]["Provider"],
        "CodeStarSourceConnection"
    );
    assert!(is_ref(&source["Configuration"]["BranchName"], "Branch"));
    assert_eq!(source["Configuration"]["DetectChanges"], true);
    let push = &properties["Triggers"][0]["GitConfiguration"]["Push"][0];
    assert!(is_ref(&push["Branches"]["Includes"][0], "Branch"));
    let deploy = &properties["Stages"][2]["Actions"][0];
    assert_eq!(deploy["ActionTypeId"]["Provider"], "ECS");
    assert_eq!(deploy["Configuration"]["FileName"], "imagedefinitions.json");
}

/// No IAM statement anywhere allows a wildcard action (`*` or `service:*`) on `*`.
#[test]
fn no_iam_statement_allows_a_wildcard_action_on_every_resource() {
    let mut checked = 0;
    for name in TEMPLATES {
        let template = template(name);
        let mut values = Vec::new();
        walk(&template, &mut values);
        for statement in values.into_iter().filter(|v| v.get("Effect").is_some()) {
            if statement["Effect"] != "Allow" {
                continue;
            }
            checked += 1;
            let everything = strings(&statement["Resource"]).iter().any(|r| r == "*");
            for action in strings(&statement["Action"]) {
                let wildcard = action == "*" || action.ends_with(":*");
                assert!(!(everything && wildcard), "{name}: {action} on *");
                assert!(action != "*", "{name}: Action *");
            }
        }
    }
    assert!(checked > 5, "statements were found ({checked})");
}

#[test]
fn secrets_reach_the_container_as_secrets_never_as_plain_environment() {
    let service = template("service.yaml");
    let container = &resource(&service, "TaskDefinition")["Properties"]["ContainerDefinitions"][0];
    let secret_names: BTreeSet<&str> = container["Secrets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        secret_names,
        BTreeSet::from(["MONGODB_URI", "OPONN_API_TOKENS", "REDIS_URL"])
    );
    for variable in container["Environment"].as_sequence().unwrap() {
        assert!(!secret_names.contains(variable["Name"].as_str().unwrap()));
    }
    // The execution role may read exactly those secrets.
    let role = &resource(&service, "ExecutionRole")["Properties"]["Policies"][0]["PolicyDocument"]
        ["Statement"][0];
    assert_eq!(role["Action"], "secretsmanager:GetSecretValue");
    assert_eq!(role["Resource"].as_sequence().unwrap().len(), 3);
}

/// Every `!ImportValue` names an export another template makes: the stacks wire together.
#[test]
fn every_import_is_exported_by_another_stack() {
    let export_name = |v: &Value| -> String {
        let Value::Tagged(tagged) = v else {
            panic!("{v:?}")
        };
        match (&*tagged.tag.to_string(), &tagged.value) {
            ("!Sub", Value::String(s)) => s.clone(),
            other => panic!("unexpected export name {other:?}"),
        }
    };
    let mut exports = BTreeSet::new();
    let mut imports = BTreeSet::new();
    for name in TEMPLATES {
        let template = template(name);
        for output in template["Outputs"].as_mapping().unwrap().values() {
            if let Some(export) = output.get("Export") {
                exports.insert(export_name(&export["Name"]));
            }
        }
        let mut values = Vec::new();
        walk(&template, &mut values);
        for value in values {
            if let Value::Tagged(tagged) = value {
                if tagged.tag == "!ImportValue" {
                    let Value::Mapping(sub) = &tagged.value else {
                        panic!("{tagged:?}")
                    };
                    imports.insert(sub[&Value::from("Fn::Sub")].as_str().unwrap().to_owned());
                }
            }
        }
    }
    assert!(!imports.is_empty());
    let missing: Vec<_> = imports.difference(&exports).collect();
    assert!(
        missing.is_empty(),
        "imported but never exported: {missing:?}"
    );
}

#[test]
fn log_groups_expire_their_logs() {
    let mut groups = 0;
    for name in TEMPLATES {
        let template = template(name);
        for group in resources_of_type(&template, "AWS::Logs::LogGroup") {
            groups += 1;
            assert!(
                group["Properties"]["RetentionInDays"].as_u64().is_some(),
                "{name}"
            );
        }
    }
    assert_eq!(groups, 2, "the service's and the build's");
}

#[test]
fn the_buildspec_tests_builds_pushes_and_writes_imagedefinitions() {
    let text = std::fs::read_to_string(root().join("buildspec.yml")).unwrap();
    let spec: Value = serde_yaml::from_str(&text).expect("buildspec.yml is YAML");
    assert_eq!(spec["version"], 0.2);
    let commands = |phase: &str| strings(&spec["phases"][phase]["commands"]).join("\n");
    let build = commands("build");
    assert!(build.contains("make test"), "the build runs the tests");
    assert!(
        build.find("make test") < build.find("docker build"),
        "tests before the image"
    );
    assert_eq!(spec["phases"]["build"]["on-failure"], "ABORT");
    let post = commands("post_build");
    assert!(post.contains("docker push \"$REPOSITORY_URI:$IMAGE_TAG\""));
    assert!(post.contains("imagedefinitions.json"));
    assert!(post.contains("\"name\":\"%s\",\"imageUri\":\"%s\""));
    assert!(strings(&spec["artifacts"]["files"]).contains(&"imagedefinitions.json".to_owned()));
    assert!(commands("pre_build").contains("ecr get-login-password"));
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_healthchecked_and_signal_safe() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("FROM ")).count(),
        2,
        "build and runtime stages"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("USER ") && !l.contains("root") && !l.ends_with(" 0")));
    assert!(lines.iter().any(|l| l.starts_with("HEALTHCHECK")));
    assert!(text.contains("CMD [\"/usr/local/bin/oponn\", \"probe\"]"));
    let entrypoint = lines
        .iter()
        .find(|l| l.starts_with("ENTRYPOINT"))
        .expect("an entrypoint");
    assert!(
        entrypoint.contains('['),
        "exec form, so SIGTERM reaches oponn: {entrypoint}"
    );
    // The dependency layer is built from the manifests alone, before the sources are copied.
    let manifests = text.find("COPY Cargo.toml Cargo.lock").unwrap();
    let sources = text.find("COPY app app").unwrap();
    assert!(manifests < sources);
}
