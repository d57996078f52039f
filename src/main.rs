//! The `huddle` command: `serve` (the default), `migrate`, `workspace create`, `user create` and
//! `api-key create`.

use std::{io::Read, process::ExitCode};

use clap::{Parser, Subcommand};
use huddle::{
    accounts, api_keys,
    app::{self, AppState},
    config::Config,
    store, telemetry, workspaces,
};

#[derive(Parser)]
#[command(
    name = "huddle",
    version,
    about = "Authenticated real-time chat backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database if needed, apply migrations, and serve HTTP + Socket.IO (the default).
    Serve,
    /// Create the database if needed and apply pending migrations, then exit.
    Migrate,
    /// Manage workspaces (tenants).
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API keys of the server API.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Print the OpenAPI document of the REST API (what GET /openapi.json serves), for client
    /// generators; needs no database.
    Openapi,
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key and print its secret (the only line on standard output, shown this once).
    Create {
        /// The slug of the workspace the key acts in.
        #[arg(long, default_value = workspaces::DEFAULT_SLUG, conflicts_with = "platform")]
        workspace: String,
        /// A platform key: it may create workspaces and act in any (Huddle-Workspace header).
        #[arg(long)]
        platform: bool,
        /// What the key is for (1-64 characters).
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// Create a workspace, with its DEFAULT_ROOMS, and print it.
    Create {
        /// 2-32 of a-z, 0-9 and '-': what clients name at register and login.
        slug: String,
        /// Its display name (default: the slug).
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user (or reset an existing one's password); the password is read from stdin.
    Create {
        username: String,
        /// Make the user an admin (of its workspace).
        #[arg(long)]
        admin: bool,
        /// The slug of the user's workspace.
        #[arg(long, default_value = workspaces::DEFAULT_SLUG)]
        workspace: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A .env file is optional; real environment variables win over it.
    let _ = dotenvy::dotenv();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("huddle: {err}");
            return ExitCode::from(2);
        }
    };
    let logs_to = match cli.command {
        None | Some(Command::Serve) => telemetry::Output::Stdout,
        Some(_) => telemetry::Output::Stderr,
    };
    telemetry::init_to(config.log_format, logs_to);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("huddle: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(config).await,
            Command::Workspace {
                command: WorkspaceCommand::Create { slug, name },
            } => create_workspace(config, &slug, name.as_deref()).await,
            Command::User {
                command:
                    UserCommand::Create {
                        username,
                        admin,
                        workspace,
                    },
            } => create_user(config, &workspace, &username, admin).await,
            Command::ApiKey {
                command:
                    ApiKeyCommand::Create {
                        workspace,
                        platform,
                        name,
                    },
            } => create_api_key(config, (!platform).then_some(workspace), &name).await,
            Command::Openapi => {
                println!("{}", huddle::openapi::json(&huddle::openapi::document()));
                Ok(())
            }
        }
    });
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "huddle stopped");
            eprintln!("huddle: {err:#}");
            ExitCode::FAILURE
        }
    };
    drop(runtime);
    telemetry::shutdown();
    code
}

async fn serve(config: Config) -> anyhow::Result<()> {
    if config.jwt_secret_generated {
        tracing::warn!(
            "JWT_SECRET is not set: using a random secret made at start. Tokens will not survive a \
             restart, and several nodes need one shared JWT_SECRET."
        );
    }
    let addr = config.listen_addr();
    let state = AppState::connect(config).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "huddle listening");
    app::serve(listener, state, app::shutdown_signal()).await?;
    tracing::info!("huddle stopped cleanly");
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    store::ensure_database(&config.database_url).await?;
    let db = store::connect(&config).await?;
    store::migrate(&db).await?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn create_workspace(config: Config, slug: &str, name: Option<&str>) -> anyhow::Result<()> {
    let state = AppState::connect(config).await?;
    let workspace = workspaces::create(&state, slug, name.unwrap_or(slug))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::to_string(&workspace)?);
    Ok(())
}

async fn create_user(
    config: Config,
    workspace: &str,
    username: &str,
    admin: bool,
) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    // The first line is the password; a trailing newline from `echo` is not part of it.
    let password = input.lines().next().unwrap_or_default().to_owned();
    let state = AppState::connect(config).await?;
    let ws = workspaces::resolve(&state, Some(workspace))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| anyhow::anyhow!("no workspace with the slug '{workspace}'"))?;
    let (user, created) = accounts::create_or_update_user_in(&state, ws, username, password, admin)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let what = if created { "created" } else { "updated" };
    println!(
        "user {what}: {} ({}){}",
        user.username,
        user.id,
        if user.is_admin { ", admin" } else { "" }
    );
    Ok(())
}

async fn create_api_key(
    config: Config,
    workspace: Option<String>,
    name: &str,
) -> anyhow::Result<()> {
    let state = AppState::connect(config).await?;
    let ws = match &workspace {
        None => None,
        Some(slug) => Some(
            workspaces::resolve(&state, Some(slug))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .ok_or_else(|| anyhow::anyhow!("no workspace with the slug '{slug}'"))?,
        ),
    };
    let created = api_keys::create(&state, ws, name, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The secret alone on standard output, so that a script can capture it; the rest to stderr.
    println!("{}", created.secret);
    eprintln!(
        "API key {} ({}) created{}; keep the secret: it is not shown again",
        created.key.id,
        created.key.prefix,
        match &workspace {
            Some(slug) => format!(" for workspace {slug}"),
            None => " (platform key)".to_owned(),
        }
    );
    Ok(())
}
