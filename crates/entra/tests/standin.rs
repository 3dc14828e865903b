//! The Graph client against the Entra ID stand-in (`tests/support/entra.rs`): both credentials
//! (a client secret; a workload-identity token minted by the real API server and verified against
//! its service-account keys), every answer a lookup can get, and the errors that say nothing
//! about a group.

use std::time::Duration;

use azure_core::credentials::Secret;
use groupbinder_api::entra::{Answer, ObjectKind};
use groupbinder_e2e::entra::{
    Entra, Federated, object_id, service_account_issuer, workload_identity_token,
};
use groupbinder_entra::{Config, CredentialSource, Directory, Lookup, LookupError};

fn config(entra: &Entra, credential: CredentialSource) -> Config {
    Config {
        tenant_id: entra.tenant.clone(),
        client_id: Some(entra.client_id.clone()),
        credential,
        authority_host: Some(entra.base.clone()),
        graph_endpoint: entra.base.clone(),
        ca_pem: Some(entra.ca_pem.clone().into_bytes()),
        timeout: Duration::from_secs(5),
    }
}

const TENANT: &str = "3f1c0d2e-0000-4000-8000-000000000001";

#[tokio::test]
async fn a_client_secret_reads_groups_users_and_errors() -> anyhow::Result<()> {
    let entra = Entra::start(TENANT)?;
    let (group, m365, user, nothing) = (object_id(1), object_id(2), object_id(3), object_id(4));
    entra.add_group(&group, "K10 admins", true);
    entra.add_group(&m365, "Team site", false);
    entra.add_user(&user);
    let secret = CredentialSource::ClientSecret(Secret::new(entra.client_secret.clone()));
    let directory = Directory::new(config(&entra, secret))?;

    match directory.lookup(&group).await? {
        Answer::Group(g) => {
            assert_eq!(g.display_name, "K10 admins");
            assert!(g.security_enabled);
        }
        other => panic!("{other:?}"),
    }
    match directory.lookup(&m365).await? {
        Answer::Group(g) => assert!(g.unified && !g.security_enabled),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        directory.lookup(&user).await?,
        Answer::NotAGroup(Some(ObjectKind::User))
    );
    assert_eq!(directory.lookup(&nothing).await?, Answer::NotAGroup(None));
    // Without a directory read permission a user is only "not a group".
    entra.set_directory_read(false);
    assert_eq!(directory.lookup(&user).await?, Answer::NotAGroup(None));

    // Without GroupMember.Read.All: Denied, naming the permission; nothing said about the group.
    entra.set_group_read(false);
    match directory.lookup(&group).await {
        Err(error @ LookupError::Denied { .. }) => {
            assert!(
                error.to_string().contains("GroupMember.Read.All"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    entra.set_group_read(true);

    // Throttled: the wait Graph asks for, and nothing said about the group.
    entra.throttle(Duration::from_secs(30), 7);
    match directory.lookup(&group).await {
        Err(LookupError::Throttled { retry_after }) => {
            assert_eq!(retry_after, Duration::from_secs(7));
        }
        other => panic!("{other:?}"),
    }
    entra.throttle(Duration::ZERO, 0);

    // Unreachable: a transport error.
    entra.set_down(true);
    assert!(matches!(
        directory.lookup(&group).await,
        Err(LookupError::Transport(_))
    ));
    entra.set_down(false);
    assert!(matches!(directory.lookup(&group).await?, Answer::Group(_)));

    // A wrong secret gets no token, and the error does not echo the secret.
    let wrong = CredentialSource::ClientSecret(Secret::new("not-the-secret-Q~1"));
    let refused = Directory::new(config(&entra, wrong))?.lookup(&group).await;
    match refused {
        Err(LookupError::Token(message)) => {
            assert!(
                message.contains("invalid_client") || message.contains("AADSTS7000215"),
                "{message}"
            );
            assert!(!message.contains("not-the-secret"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_workload_identity_token_from_the_api_server_is_the_credential() -> anyhow::Result<()> {
    let cp = groupbinder_testenv::ControlPlane::shared().await?;
    let client = cp.client().await?;
    let entra = Entra::start(TENANT)?;
    let group = object_id(11);
    entra.add_group(&group, "K10 operators", true);
    let (issuer, jwks) = service_account_issuer(&client).await?;
    entra.federate(Federated {
        issuer,
        subject: "system:serviceaccount:default:entra-wi".into(),
        jwks,
    });
    let dir = tempfile_dir()?;
    let token_file = dir.join("azure-identity-token");
    std::fs::write(
        &token_file,
        workload_identity_token(&client, "default", "entra-wi").await?,
    )?;
    let wi = CredentialSource::WorkloadIdentity {
        token_file: Some(token_file.clone()),
    };
    let directory = Directory::new(config(&entra, wi))?;
    assert!(matches!(directory.lookup(&group).await?, Answer::Group(_)));

    // Another ServiceAccount's token: no federated credential matches it.
    std::fs::write(
        &token_file,
        workload_identity_token(&client, "default", "entra-other").await?,
    )?;
    let other = Directory::new(config(
        &entra,
        CredentialSource::WorkloadIdentity {
            token_file: Some(token_file),
        },
    ))?;
    match other.lookup(&group).await {
        Err(LookupError::Token(message)) => assert!(
            message.contains("invalid_client") || message.contains("AADSTS700211"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("groupbinder-entra-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
