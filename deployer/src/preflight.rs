//! What `up` checks before it changes anything, because each one fails a deployment late and
//! obscurely otherwise:
//!
//! - ECS's service-linked role, `AWSServiceRoleForECS`. ECS creates it with the first cluster
//!   made in the console, but a new account driven only through CloudFormation may not have it,
//!   and creating a service then fails. Missing, it is created (IAM `CreateServiceLinkedRole`,
//!   which is idempotent in effect: it exists afterwards either way).
//! - The secrets in deploy.toml: each Secrets Manager secret exists (`DescribeSecret`, which
//!   reads no value), and is named by its full ARN, the one ending in the six random characters
//!   Secrets Manager appends. The task execution role may read exactly the configured ARNs, so
//!   a partial ARN would be denied when the task starts. Each is in the stack's region.
//! - The certificate, if any, is in the stack's region: a load balancer can only use an ACM
//!   certificate of its own region.
//!
//! Every failure is collected, so one run names all of them.

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::{aws::Aws, config::DeployConfig, console::Console, error::DeployError};

/// The role ECS uses to manage the cluster's resources on the account's behalf.
pub const ECS_SERVICE_LINKED_ROLE: &str = "AWSServiceRoleForECS";

pub async fn check(aws: &Aws, config: &DeployConfig, console: &Console) -> Result<(), DeployError> {
    console.line("preflight:");
    let mut failures = Vec::new();
    if let Err(failure) = ecs_service_linked_role(aws, console).await {
        failures.push(failure);
    }
    // The Redis URL is the cache stack's own secret when the cache is managed.
    let secrets = [
        ("secrets.mongodb_uri", Some(&config.secrets.mongodb_uri)),
        ("secrets.redis_url", config.secrets.redis_url.as_ref()),
        ("secrets.api_tokens", Some(&config.secrets.api_tokens)),
    ];
    for (field, arn) in secrets
        .into_iter()
        .filter_map(|(field, arn)| Some((field, arn?)))
    {
        match secret(aws, &config.region, field, arn).await {
            Ok(line) => console.line(format!("  {line}")),
            Err(failure) => failures.push(failure),
        }
    }
    if let Some(certificate) = &config.service.certificate_arn {
        match certificate_region(certificate, &config.region) {
            Ok(()) => console.line(format!("  certificate in {}: ok", config.region)),
            Err(failure) => failures.push(failure),
        }
    }
    match failures.is_empty() {
        true => Ok(()),
        false => Err(DeployError::Preflight(failures)),
    }
}

async fn ecs_service_linked_role(aws: &Aws, console: &Console) -> Result<(), String> {
    match aws
        .iam
        .get_role()
        .role_name(ECS_SERVICE_LINKED_ROLE)
        .send()
        .await
    {
        Ok(_) => {
            console.line(format!("  ECS service-linked role {ECS_SERVICE_LINKED_ROLE}: exists"));
            return Ok(());
        }
        Err(error) if error.code() == Some("NoSuchEntity") => {}
        Err(error) => {
            return Err(format!(
                "could not read the ECS service-linked role {ECS_SERVICE_LINKED_ROLE} (IAM GetRole): {}",
                crate::error::describe_sdk_error(&error)
            ))
        }
    }
    let created = aws
        .iam
        .create_service_linked_role()
        .aws_service_name("ecs.amazonaws.com")
        .send()
        .await;
    match created {
        Ok(_) => {}
        // Created meanwhile (another `up`, ECS itself; moto also names it differently, so
        // GetRole misses the one it made): it exists, which is all that matters.
        Err(error) if error.code() == Some("EntityAlreadyExists") => {
            console.line(format!(
                "  ECS service-linked role {ECS_SERVICE_LINKED_ROLE}: exists (already created)"
            ));
            return Ok(());
        }
        Err(error) => {
            return Err(format!(
                "the ECS service-linked role {ECS_SERVICE_LINKED_ROLE} is missing and could not be \
                 created (IAM CreateServiceLinkedRole needs iam:CreateServiceLinkedRole): {}",
                crate::error::describe_sdk_error(&error)
            ))
        }
    }
    console.line(format!(
        "  ECS service-linked role {ECS_SERVICE_LINKED_ROLE}: was missing, created"
    ));
    Ok(())
}

/// `arn:aws:<service>:<region>:...` -> the region.
fn region_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|region| !region.is_empty())
}

async fn secret(aws: &Aws, region: &str, field: &str, arn: &str) -> Result<String, String> {
    match region_of(arn) {
        Some(secret_region) if secret_region != region => {
            return Err(format!(
                "{field}: the secret is in {secret_region}, the stacks in {region}: ECS reads \
                 secrets of the task's region; store it in {region} ({arn})"
            ))
        }
        _ => {}
    }
    if arn.split(':').nth(2) != Some("secretsmanager") {
        return Ok(format!("{field}: an SSM parameter, not checked ({arn})"));
    }
    let described = aws
        .secrets
        .describe_secret()
        .secret_id(arn)
        .send()
        .await
        .map_err(|error| match error.code() {
            Some("ResourceNotFoundException") => format!(
                "{field}: no such secret in {region}: {arn}\n      create it: aws secretsmanager \
                 create-secret --region {region} --name <name> --secret-string '...', then put \
                 the ARN it prints in deploy.toml"
            ),
            _ => format!(
                "{field}: cannot describe {arn}: {}",
                crate::error::describe_sdk_error(&error)
            ),
        })?;
    let full = described.arn().unwrap_or_default();
    if full != arn {
        return Err(format!(
            "{field}: {arn} is a partial ARN; use the secret's full ARN {full} (the task's \
             execution role may read exactly the ARNs in deploy.toml, so ECS would be denied the \
             secret when a task starts)"
        ));
    }
    if described.deleted_date().is_some() {
        return Err(format!(
            "{field}: {arn} is scheduled for deletion; restore it (aws secretsmanager \
             restore-secret) or use another"
        ));
    }
    let key = described
        .kms_key_id()
        .map(|key| format!(", encrypted with {key}: the execution role needs kms:Decrypt on it"))
        .unwrap_or_default();
    Ok(format!("{field}: exists{key}"))
}

fn certificate_region(arn: &str, region: &str) -> Result<(), String> {
    match region_of(arn) {
        Some(found) if found == region => Ok(()),
        Some(found) => Err(format!(
            "service.certificate_arn is in {found}, the load balancer in {region}: request or \
             import the certificate in {region} (ACM certificates serve load balancers of their \
             own region only): {arn}"
        )),
        None => Err(format!("service.certificate_arn is not an ACM ARN: {arn}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_of_another_region_is_refused_with_the_region_to_use() {
        let arn = "arn:aws:acm:us-east-1:123456789012:certificate/0f3e2c1a";
        assert!(certificate_region(arn, "us-east-1").is_ok());
        let failure = certificate_region(arn, "eu-west-1").expect_err("another region");
        assert!(
            failure.contains("is in us-east-1, the load balancer in eu-west-1"),
            "{failure}"
        );
        assert!(failure.contains("in eu-west-1"), "{failure}");
    }
}
