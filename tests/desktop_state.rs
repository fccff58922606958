//! desktop-state against real Postgres and NATS (and MindsDB for the agent tables): CRUD, focus
//! and z-order, optimistic concurrency, tenant isolation on every RPC, coalesced moves and their
//! flush on shutdown, save/restore across a restart, and the events every change publishes.

use std::time::{Duration, Instant};

use getlood_auth::TenantId;
use getlood_events::{Domain, EventBus, Payload, ReceivedEvent};
use getlood_mindsdb::{Ident, MindsdbClient, MindsdbConfig, SqlBuilder, TenantContext};
use getlood_proto::common::v1::{ErrorCode as DetailCode, ErrorDetail, PageRequest};
use getlood_proto::desktop_state::v1::desktop_state_service_client::DesktopStateServiceClient;
use getlood_proto::desktop_state::v1::*;
use getlood_testkit::{Platform, Service};
use prost::Message as _;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

type Client = DesktopStateServiceClient<Channel>;

fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii token"));
    req
}

/// A tenant id no other test (or earlier run) uses: events and MindsDB companies are shared.
fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_nanos();
    format!("{prefix}_{:012x}{:02x}", nanos & 0xffff_ffff_ffff, N.fetch_add(1, Ordering::Relaxed) & 0xff)
}

async fn start() -> anyhow::Result<(Platform, Client)> {
    let platform = Platform::builder().service(Service::DesktopState).start().await?;
    platform.wait_ready(Duration::from_secs(20)).await?;
    let client = Client::new(platform.grpc_channel(Service::DesktopState));
    Ok((platform, client))
}

async fn create_desktop(client: &mut Client, token: &str, name: &str) -> Desktop {
    client
        .create_desktop(authed(token, CreateDesktopRequest { name: name.into(), request_id: String::new() }))
        .await
        .expect("CreateDesktop")
        .into_inner()
        .desktop
        .expect("a desktop")
}

async fn open(
    client: &mut Client,
    token: &str,
    desktop: &str,
    app: &str,
    geometry: Option<Geometry>,
) -> OpenWindowResponse {
    client
        .open_window(authed(
            token,
            OpenWindowRequest { desktop_id: desktop.into(), app_id: app.into(), geometry, ..Default::default() },
        ))
        .await
        .expect("OpenWindow")
        .into_inner()
}

async fn move_to(
    client: &mut Client,
    token: &str,
    window: &str,
    x: i32,
    y: i32,
    expected_version: i64,
) -> Result<Window, Status> {
    client
        .update_window_geometry(authed(
            token,
            UpdateWindowGeometryRequest {
                window_id: window.into(),
                x: Some(x),
                y: Some(y),
                expected_version,
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().window.expect("a window"))
}

async fn get_window(client: &mut Client, token: &str, window: &str) -> Result<Window, Status> {
    client
        .get_window(authed(token, GetWindowRequest { window_id: window.into() }))
        .await
        .map(|r| r.into_inner().window.expect("a window"))
}

fn detail(status: &Status) -> ErrorDetail {
    let bytes = status
        .metadata()
        .get_bin("getlood-error-bin")
        .expect("error detail trailer")
        .to_bytes()
        .expect("binary trailer");
    ErrorDetail::decode(bytes).expect("an ErrorDetail")
}

async fn window_events(tenant: &str) -> anyhow::Result<Vec<ReceivedEvent>> {
    let bus = EventBus::new(async_nats::connect(getlood_testkit::nats_url()).await?, "getlood");
    Ok(bus
        .read(
            &TenantId::parse(tenant).map_err(anyhow::Error::msg)?,
            Domain::Window,
            0,
            10_000,
            Duration::from_millis(700),
        )
        .await?)
}

/// A window's layout: id, app, title, geometry, z-index, state and props.
type WindowLayout = (String, String, String, i32, i32, i32, i32, i32, i32, Option<prost_types::Struct>);

/// The layout fields a save must bring back (versions and timestamps move on).
fn layout(d: &Desktop) -> (String, Vec<String>, Vec<WindowLayout>) {
    let windows = d
        .windows
        .iter()
        .map(|w| {
            (
                w.id.clone(),
                w.app_id.clone(),
                w.title.clone(),
                w.x,
                w.y,
                w.width,
                w.height,
                w.z_index,
                w.state,
                w.props.clone(),
            )
        })
        .collect();
    (d.name.clone(), d.focus_stack.clone(), windows)
}

#[tokio::test]
async fn desktop_state_crud_focus_stack_and_z_order() -> anyhow::Result<()> {
    let (platform, mut client) = start().await?;
    let token = platform.token(&unique("crud"), "alice", &["member"]);

    let desktop = create_desktop(&mut client, &token, "Work").await;
    assert_eq!((desktop.version, desktop.name.as_str(), desktop.owner_user_id.as_str()), (1, "Work", "alice"));
    // An empty name lists the problem.
    let err = client
        .create_desktop(authed(&token, CreateDesktopRequest { name: " ".into(), ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(detail(&err).field_violations[0].field, "name");
    // The idempotency key returns the first desktop.
    let keyed = CreateDesktopRequest { name: "Keyed".into(), request_id: "req-1".into() };
    let k1 = client.create_desktop(authed(&token, keyed.clone())).await?.into_inner().desktop.unwrap();
    let k2 = client.create_desktop(authed(&token, keyed)).await?.into_inner().desktop.unwrap();
    assert_eq!(k1.id, k2.id);

    let a = open(&mut client, &token, &desktop.id, "dashboard", None).await;
    let b =
        open(&mut client, &token, &desktop.id, "chat", Some(Geometry { x: 10, y: 20, width: 300, height: 200 })).await;
    let c = open(&mut client, &token, &desktop.id, "files", None).await;
    let (a, b, c) = (a.window.unwrap(), b.window.unwrap(), c);
    assert_eq!(c.desktop_version, 4, "every window change bumps the desktop");
    let c = c.window.clone().unwrap();
    assert_eq!((a.title.as_str(), a.width, a.height, a.version), ("dashboard", 800, 600, 1), "defaults");
    assert_eq!((b.x, b.y, b.width, b.height), (10, 20, 300, 200));
    assert!(a.z_index < b.z_index && b.z_index < c.z_index, "each new window opens on top");
    // Bad input: every problem listed.
    let err = client
        .open_window(authed(
            &token,
            OpenWindowRequest {
                desktop_id: desktop.id.clone(),
                app_id: String::new(),
                geometry: Some(Geometry { x: 0, y: 0, width: 0, height: -1 }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(detail(&err).field_violations.len(), 3);
    // OpenWindow with a request id (a UiAction id) opens once.
    let action = OpenWindowRequest {
        desktop_id: desktop.id.clone(),
        app_id: "report".into(),
        request_id: "action-1".into(),
        ..Default::default()
    };
    let r1 = client.open_window(authed(&token, action.clone())).await?.into_inner();
    let r2 = client.open_window(authed(&token, action)).await?.into_inner();
    assert_eq!(r1.window.as_ref().unwrap().id, r2.window.as_ref().unwrap().id);
    client
        .close_window(authed(&token, CloseWindowRequest { window_id: r1.window.unwrap().id, expected_version: 0 }))
        .await?;

    let got = client
        .get_desktop(authed(&token, GetDesktopRequest { desktop_id: desktop.id.clone() }))
        .await?
        .into_inner()
        .desktop
        .unwrap();
    let ids: Vec<&str> = got.windows.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, [a.id.as_str(), b.id.as_str(), c.id.as_str()], "windows in z-order, bottom first");
    assert_eq!(got.focus_stack, [c.id.clone(), b.id.clone(), a.id.clone()], "most recently focused first");

    // Focus raises the bottom window to the top and the front of the focus stack.
    let f = client
        .focus_window(authed(&token, FocusWindowRequest { window_id: a.id.clone(), expected_version: 1 }))
        .await?
        .into_inner();
    let fa = f.window.unwrap();
    assert!(fa.z_index > c.z_index);
    assert_eq!(fa.version, 2);
    assert_eq!(f.focus_stack, [a.id.clone(), c.id.clone(), b.id.clone()]);

    // Minimize drops it from the focus stack; minimizing again changes nothing.
    let m = client
        .minimize_window(authed(&token, MinimizeWindowRequest { window_id: a.id.clone(), expected_version: 2 }))
        .await?
        .into_inner()
        .window
        .unwrap();
    assert_eq!((m.state(), m.version), (WindowState::Minimized, 3));
    let again = client
        .minimize_window(authed(&token, MinimizeWindowRequest { window_id: a.id.clone(), expected_version: 0 }))
        .await?
        .into_inner()
        .window
        .unwrap();
    assert_eq!(again.version, 3, "idempotent");
    let got = client
        .get_desktop(authed(&token, GetDesktopRequest { desktop_id: desktop.id.clone() }))
        .await?
        .into_inner()
        .desktop
        .unwrap();
    assert_eq!(got.focus_stack, [c.id.clone(), b.id.clone()]);
    // Moving a minimized window must wait for a restore.
    let err = move_to(&mut client, &token, &a.id, 1, 1, 3).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // Focus brings it back, normal and on top.
    let f = client
        .focus_window(authed(&token, FocusWindowRequest { window_id: a.id.clone(), expected_version: 0 }))
        .await?
        .into_inner();
    assert_eq!(f.window.unwrap().state(), WindowState::Normal);
    assert_eq!(f.focus_stack[0], a.id);

    // Maximize keeps the normal geometry for restore.
    let mx = client
        .maximize_window(authed(&token, MaximizeWindowRequest { window_id: b.id.clone(), expected_version: 0 }))
        .await?
        .into_inner()
        .window
        .unwrap();
    assert_eq!((mx.state(), mx.x, mx.width), (WindowState::Maximized, 10, 300));
    let err = move_to(&mut client, &token, &b.id, 5, 5, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "coalesced moves are refused too");
    let rs = client
        .restore_window(authed(&token, RestoreWindowRequest { window_id: b.id.clone(), expected_version: mx.version }))
        .await?
        .into_inner()
        .window
        .unwrap();
    assert_eq!((rs.state(), rs.x, rs.y, rs.width, rs.height), (WindowState::Normal, 10, 20, 300, 200));

    // A checked move is written before the reply; a resize alone keeps the position.
    let moved = move_to(&mut client, &token, &b.id, 111, 222, rs.version).await?;
    assert_eq!((moved.x, moved.y, moved.version), (111, 222, rs.version + 1));
    let resized = client
        .update_window_geometry(authed(
            &token,
            UpdateWindowGeometryRequest {
                window_id: b.id.clone(),
                width: Some(640),
                expected_version: moved.version,
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .window
        .unwrap();
    assert_eq!((resized.x, resized.y, resized.width, resized.height), (111, 222, 640, 200));
    let err = client
        .update_window_geometry(authed(
            &token,
            UpdateWindowGeometryRequest { window_id: b.id.clone(), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "no field set");

    // Paging through windows in z-order, and through desktops newest first.
    let p1 = client
        .list_windows(authed(
            &token,
            ListWindowsRequest {
                desktop_id: desktop.id.clone(),
                page: Some(PageRequest { page_size: 2, page_token: String::new() }),
                state: 0,
            },
        ))
        .await?
        .into_inner();
    assert_eq!(p1.windows.len(), 2);
    let token2 = p1.page.unwrap().next_page_token;
    assert!(!token2.is_empty());
    let p2 = client
        .list_windows(authed(
            &token,
            ListWindowsRequest {
                desktop_id: desktop.id.clone(),
                page: Some(PageRequest { page_size: 2, page_token: token2.clone() }),
                state: 0,
            },
        ))
        .await?
        .into_inner();
    assert_eq!(p2.windows.len(), 1);
    assert!(p2.page.unwrap().next_page_token.is_empty());
    let all: Vec<i32> = p1.windows.iter().chain(&p2.windows).map(|w| w.z_index).collect();
    assert!(all.windows(2).all(|z| z[0] < z[1]));
    let err = client
        .list_desktops(authed(
            &token,
            ListDesktopsRequest {
                page: Some(PageRequest { page_size: 1, page_token: token2 }),
                include_windows: false,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "a windows token is not a desktops token");
    let d1 = client
        .list_desktops(authed(
            &token,
            ListDesktopsRequest {
                page: Some(PageRequest { page_size: 1, page_token: String::new() }),
                include_windows: true,
            },
        ))
        .await?
        .into_inner();
    assert_eq!(d1.desktops[0].id, k1.id, "newest first");
    let d2 = client
        .list_desktops(authed(
            &token,
            ListDesktopsRequest {
                page: Some(PageRequest { page_size: 1, page_token: d1.page.unwrap().next_page_token }),
                include_windows: true,
            },
        ))
        .await?
        .into_inner();
    assert_eq!(d2.desktops[0].id, desktop.id);
    assert_eq!(d2.desktops[0].windows.len(), 3, "include_windows");

    // Close removes it from the focus stack; delete takes the rest.
    let closed = client
        .close_window(authed(&token, CloseWindowRequest { window_id: c.id.clone(), expected_version: 0 }))
        .await?
        .into_inner();
    assert!(!closed.focus_stack.contains(&c.id));
    assert_eq!(get_window(&mut client, &token, &c.id).await.unwrap_err().code(), Code::NotFound);
    client
        .delete_desktop(authed(&token, DeleteDesktopRequest { desktop_id: desktop.id.clone(), expected_version: 0 }))
        .await?;
    let err =
        client.get_desktop(authed(&token, GetDesktopRequest { desktop_id: desktop.id.clone() })).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(get_window(&mut client, &token, &a.id).await.unwrap_err().code(), Code::NotFound);
    platform.stop().await
}

#[tokio::test]
async fn desktop_state_stale_versions_are_aborted_with_the_current_state() -> anyhow::Result<()> {
    let (platform, mut client) = start().await?;
    let token = platform.token(&unique("stale"), "alice", &["member"]);
    let desktop = create_desktop(&mut client, &token, "Home").await;
    let w = open(&mut client, &token, &desktop.id, "notes", None).await.window.unwrap();
    let moved = move_to(&mut client, &token, &w.id, 50, 60, 1).await?;
    assert_eq!(moved.version, 2);

    // A writer still holding version 1 loses, and learns the current window.
    for err in [
        move_to(&mut client, &token, &w.id, 0, 0, 1).await.unwrap_err(),
        client
            .focus_window(authed(&token, FocusWindowRequest { window_id: w.id.clone(), expected_version: 1 }))
            .await
            .unwrap_err(),
        client
            .close_window(authed(&token, CloseWindowRequest { window_id: w.id.clone(), expected_version: 1 }))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::Aborted);
        assert!(err.message().contains("version is 2"), "{}", err.message());
        let d = detail(&err);
        assert_eq!((d.code, d.current_version), (DetailCode::VersionConflict as i32, 2));
        let current = Window::decode(d.current.unwrap().value.as_slice())?;
        assert_eq!((current.id.as_str(), current.x, current.y), (w.id.as_str(), 50, 60));
    }
    // Desktop-level calls carry the whole desktop.
    let err = client
        .save_desktop(authed(
            &token,
            SaveDesktopRequest { desktop_id: desktop.id.clone(), expected_version: 1, ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    let d = detail(&err);
    assert_eq!(d.current_version, 3);
    let current = Desktop::decode(d.current.unwrap().value.as_slice())?;
    assert_eq!(current.windows.len(), 1);
    let err = client
        .open_window(authed(
            &token,
            OpenWindowRequest {
                desktop_id: desktop.id.clone(),
                app_id: "x".into(),
                expected_desktop_version: 2,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    for err in [
        client
            .delete_desktop(authed(
                &token,
                DeleteDesktopRequest { desktop_id: desktop.id.clone(), expected_version: 2 },
            ))
            .await
            .unwrap_err(),
        client
            .restore_desktop(authed(
                &token,
                RestoreDesktopRequest { desktop_id: desktop.id.clone(), expected_version: 2 },
            ))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::Aborted);
        assert_eq!(detail(&err).current_version, 3);
    }
    // The right versions go through.
    client
        .delete_desktop(authed(&token, DeleteDesktopRequest { desktop_id: desktop.id.clone(), expected_version: 3 }))
        .await?;
    platform.stop().await
}

#[tokio::test]
async fn desktop_state_other_tenants_and_users_get_not_found_on_every_rpc() -> anyhow::Result<()> {
    let (platform, mut client) = start().await?;
    let acme = unique("acme");
    let owner = platform.token(&acme, "alice", &["member"]);
    let desktop = create_desktop(&mut client, &owner, "Private").await;
    let window = open(&mut client, &owner, &desktop.id, "secrets", None).await.window.unwrap();
    let (d, w) = (desktop.id.clone(), window.id.clone());

    for intruder in
        [platform.token(&unique("globex"), "alice", &["admin"]), platform.token(&acme, "mallory", &["member"])]
    {
        let t = intruder.as_str();
        let listed = client.list_desktops(authed(t, ListDesktopsRequest::default())).await?.into_inner();
        assert!(listed.desktops.is_empty(), "no foreign desktop is listed");
        let calls: Vec<(&str, Result<(), Status>)> = vec![
            ("GetDesktop", client.get_desktop(authed(t, GetDesktopRequest { desktop_id: d.clone() })).await.map(drop)),
            (
                "ListWindows",
                client
                    .list_windows(authed(t, ListWindowsRequest { desktop_id: d.clone(), ..Default::default() }))
                    .await
                    .map(drop),
            ),
            (
                "DeleteDesktop",
                client
                    .delete_desktop(authed(t, DeleteDesktopRequest { desktop_id: d.clone(), expected_version: 0 }))
                    .await
                    .map(drop),
            ),
            (
                "OpenWindow",
                client
                    .open_window(authed(
                        t,
                        OpenWindowRequest { desktop_id: d.clone(), app_id: "x".into(), ..Default::default() },
                    ))
                    .await
                    .map(drop),
            ),
            ("GetWindow", get_window(&mut client, t, &w).await.map(drop)),
            ("UpdateWindowGeometry/coalesced", move_to(&mut client, t, &w, 1, 1, 0).await.map(drop)),
            ("UpdateWindowGeometry/checked", move_to(&mut client, t, &w, 1, 1, 1).await.map(drop)),
            (
                "FocusWindow",
                client
                    .focus_window(authed(t, FocusWindowRequest { window_id: w.clone(), expected_version: 0 }))
                    .await
                    .map(drop),
            ),
            (
                "MinimizeWindow",
                client
                    .minimize_window(authed(t, MinimizeWindowRequest { window_id: w.clone(), expected_version: 0 }))
                    .await
                    .map(drop),
            ),
            (
                "MaximizeWindow",
                client
                    .maximize_window(authed(t, MaximizeWindowRequest { window_id: w.clone(), expected_version: 0 }))
                    .await
                    .map(drop),
            ),
            (
                "RestoreWindow",
                client
                    .restore_window(authed(t, RestoreWindowRequest { window_id: w.clone(), expected_version: 0 }))
                    .await
                    .map(drop),
            ),
            (
                "CloseWindow",
                client
                    .close_window(authed(t, CloseWindowRequest { window_id: w.clone(), expected_version: 0 }))
                    .await
                    .map(drop),
            ),
            (
                "SaveDesktop",
                client
                    .save_desktop(authed(t, SaveDesktopRequest { desktop_id: d.clone(), ..Default::default() }))
                    .await
                    .map(drop),
            ),
            (
                "RestoreDesktop",
                client
                    .restore_desktop(authed(t, RestoreDesktopRequest { desktop_id: d.clone(), expected_version: 0 }))
                    .await
                    .map(drop),
            ),
        ];
        for (rpc, result) in calls {
            assert_eq!(result.err().map(|e| e.code()), Some(Code::NotFound), "{rpc} must be NOT_FOUND for an intruder");
        }
    }
    // Malformed ids are NOT_FOUND too, and nothing of the owner's changed.
    assert_eq!(get_window(&mut client, &owner, "not-a-uuid").await.unwrap_err().code(), Code::NotFound);
    let still = get_window(&mut client, &owner, &w).await?;
    assert_eq!((still.version, still.state()), (1, WindowState::Normal));
    let got = client
        .get_desktop(authed(&owner, GetDesktopRequest { desktop_id: d.clone() }))
        .await?
        .into_inner()
        .desktop
        .unwrap();
    assert_eq!(got.version, 2);
    platform.stop().await
}

#[tokio::test]
async fn desktop_state_coalesces_rapid_moves_and_persists_the_last_within_500ms() -> anyhow::Result<()> {
    let (first, mut client) = start().await?;
    // A second replica reads the database without this replica's pending moves.
    let reader = Platform::builder().service(Service::DesktopState).replica_of(&first).start().await?;
    reader.wait_ready(Duration::from_secs(20)).await?;
    let mut reader_client = Client::new(reader.grpc_channel(Service::DesktopState));
    let tenant = unique("drag");
    let token = first.token(&tenant, "alice", &["member"]);
    let desktop = create_desktop(&mut client, &token, "Drag").await;
    let w = open(&mut client, &token, &desktop.id, "canvas", None).await.window.unwrap();

    let mut last = None;
    for i in 1..=100 {
        last = Some(move_to(&mut client, &token, &w.id, i, 2 * i, 0).await?);
    }
    let acked = Instant::now();
    let last = last.unwrap();
    assert_eq!((last.x, last.y), (100, 200), "the acknowledgement shows the latest position");

    let persisted = loop {
        let stored = get_window(&mut reader_client, &token, &w.id).await?;
        if (stored.x, stored.y) == (100, 200) {
            break stored;
        }
        assert!(acked.elapsed() < Duration::from_millis(500), "final position not persisted within 500 ms: {stored:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elapsed = acked.elapsed();
    // Give a flush that was mid-way a moment, then count the writes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored = get_window(&mut reader_client, &token, &w.id).await?;
    let writes = stored.version - w.version;
    assert!((1..=20).contains(&writes), "100 moves became {writes} writes");
    assert!(persisted.version <= stored.version);

    let events = window_events(&tenant).await?;
    let moves: Vec<&WindowMovedRef> = events
        .iter()
        .filter_map(|e| match &e.envelope.payload {
            Some(Payload::WindowMoved(m)) if m.window_id == w.id => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(i64::try_from(moves.len())?, writes, "one event per write");
    let g = moves.last().unwrap().geometry.unwrap();
    assert_eq!((g.x, g.y), (100, 200));
    assert!(events.iter().all(|e| e.envelope.entity_id == desktop.id));
    eprintln!("100 moves: {writes} writes, persisted {elapsed:?} after the last acknowledgement");
    reader.stop().await?;
    first.stop().await
}

type WindowMovedRef = getlood_proto::events::v1::WindowMoved;

#[tokio::test]
async fn desktop_state_stop_flushes_acknowledged_moves() -> anyhow::Result<()> {
    let (mut first, mut client) = start().await?;
    let tenant = unique("sigterm");
    let token = first.token(&tenant, "alice", &["member"]);
    let desktop = create_desktop(&mut client, &token, "Flush").await;
    let w = open(&mut client, &token, &desktop.id, "canvas", None).await.window.unwrap();
    for i in 1..=30 {
        move_to(&mut client, &token, &w.id, 1000 + i, 500 + i, 0).await?;
    }
    // Stop right after the last acknowledgement, as SIGTERM would.
    first.stop_service(Service::DesktopState).await?;

    let second = Platform::builder().service(Service::DesktopState).replica_of(&first).start().await?;
    second.wait_ready(Duration::from_secs(20)).await?;
    let mut client = Client::new(second.grpc_channel(Service::DesktopState));
    let stored = get_window(&mut client, &token, &w.id).await?;
    assert_eq!((stored.x, stored.y), (1030, 530), "the last acknowledged move survived the stop");
    // Its event left too (relayed at shutdown, or by the restarted relay).
    let events = window_events(&tenant).await?;
    let last_move = events.iter().rev().find_map(|e| match &e.envelope.payload {
        Some(Payload::WindowMoved(m)) => m.geometry,
        _ => None,
    });
    assert_eq!(last_move.map(|g| (g.x, g.y)), Some((1030, 530)));
    second.stop().await?;
    first.stop().await
}

#[tokio::test]
async fn desktop_state_save_then_restore_after_a_restart_returns_the_same_state() -> anyhow::Result<()> {
    let (mut first, mut client) = start().await?;
    let token = first.token(&unique("save"), "alice", &["member"]);
    let desktop = create_desktop(&mut client, &token, "Layout").await;
    let a = open(&mut client, &token, &desktop.id, "dashboard", None).await.window.unwrap();
    let b = open(&mut client, &token, &desktop.id, "chat", None).await.window.unwrap();
    let props = prost_types::Struct {
        fields: [(
            "chart".to_owned(),
            prost_types::Value { kind: Some(prost_types::value::Kind::StringValue("bar".into())) },
        )]
        .into(),
    };
    // The client's bulk sync: b moves below a and maximizes, a gets props, a new window appears.
    let save = SaveDesktopRequest {
        desktop_id: desktop.id.clone(),
        name: "Saved layout".into(),
        windows: vec![
            Window {
                id: b.id.clone(),
                app_id: "chat".into(),
                title: "Chat".into(),
                x: 5,
                y: 6,
                width: 400,
                height: 300,
                state: WindowState::Maximized as i32,
                ..Default::default()
            },
            Window {
                id: a.id.clone(),
                app_id: "dashboard".into(),
                title: "KPIs".into(),
                x: 100,
                y: 50,
                width: 900,
                height: 700,
                props: Some(props),
                ..Default::default()
            },
            Window {
                app_id: "terminal".into(),
                x: 1,
                y: 2,
                width: 300,
                height: 200,
                state: WindowState::Minimized as i32,
                ..Default::default()
            },
        ],
        focus_stack: vec![a.id.clone(), b.id.clone()],
        expected_version: 3,
    };
    let saved = client.save_desktop(authed(&token, save.clone())).await?.into_inner().desktop.unwrap();
    assert!(saved.saved_at.is_some());
    assert_eq!(saved.windows.iter().map(|w| w.z_index).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(saved.windows[0].id, b.id);
    assert!(!saved.windows[2].id.is_empty(), "the new window got an id");
    // Bad saves list every problem.
    let mut bad = save.clone();
    bad.expected_version = 0;
    bad.windows[0].id = "00000000-0000-0000-0000-000000000001".into();
    bad.windows[1].width = 0;
    bad.focus_stack = vec!["nope".into()];
    let err = client.save_desktop(authed(&token, bad)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(detail(&err).field_violations.len(), 3, "{}", err.message());

    // Change things after the save.
    client
        .restore_window(authed(&token, RestoreWindowRequest { window_id: b.id.clone(), expected_version: 0 }))
        .await?;
    move_to(&mut client, &token, &b.id, 700, 700, 0).await?;
    client.close_window(authed(&token, CloseWindowRequest { window_id: a.id.clone(), expected_version: 0 })).await?;
    open(&mut client, &token, &desktop.id, "browser", None).await;

    first.stop_service(Service::DesktopState).await?;
    let second = Platform::builder().service(Service::DesktopState).replica_of(&first).start().await?;
    second.wait_ready(Duration::from_secs(20)).await?;
    let mut client = Client::new(second.grpc_channel(Service::DesktopState));
    let restored = client
        .restore_desktop(authed(&token, RestoreDesktopRequest { desktop_id: desktop.id.clone(), expected_version: 0 }))
        .await?
        .into_inner();
    assert_eq!(restored.saved_at, saved.saved_at);
    let state = restored.desktop.unwrap();
    assert_eq!(layout(&state), layout(&saved));
    assert!(state.version > saved.version, "a restore is a change");
    let fetched = client
        .get_desktop(authed(&token, GetDesktopRequest { desktop_id: desktop.id.clone() }))
        .await?
        .into_inner()
        .desktop
        .unwrap();
    assert_eq!(layout(&fetched), layout(&saved));
    // The re-created window's version moved past what clients saw before it closed.
    let a_now = fetched.windows.iter().find(|w| w.id == a.id).unwrap();
    assert!(a_now.version > saved.windows[1].version);
    // A desktop never saved restores to itself, without saved_at.
    let other = create_desktop(&mut client, &token, "Never saved").await;
    let r = client
        .restore_desktop(authed(&token, RestoreDesktopRequest { desktop_id: other.id.clone(), expected_version: 0 }))
        .await?
        .into_inner();
    assert!(r.saved_at.is_none());
    assert_eq!(r.desktop.unwrap().version, 1);
    second.stop().await?;
    first.stop().await
}

#[tokio::test]
async fn desktop_state_publishes_every_change_with_the_desktop_id() -> anyhow::Result<()> {
    let (platform, mut client) = start().await?;
    let tenant = unique("events");
    let token = platform.token(&tenant, "alice", &["member"]);
    let desktop = create_desktop(&mut client, &token, "Events").await;
    let w = open(&mut client, &token, &desktop.id, "dashboard", None).await.window.unwrap();
    move_to(&mut client, &token, &w.id, 9, 9, 1).await?;
    client.focus_window(authed(&token, FocusWindowRequest { window_id: w.id.clone(), expected_version: 0 })).await?;
    client
        .minimize_window(authed(&token, MinimizeWindowRequest { window_id: w.id.clone(), expected_version: 0 }))
        .await?;
    client
        .save_desktop(authed(&token, SaveDesktopRequest { desktop_id: desktop.id.clone(), ..Default::default() }))
        .await?;
    client
        .restore_desktop(authed(&token, RestoreDesktopRequest { desktop_id: desktop.id.clone(), expected_version: 0 }))
        .await?;
    let w2 = open(&mut client, &token, &desktop.id, "chat", None).await.window.unwrap();
    client.close_window(authed(&token, CloseWindowRequest { window_id: w2.id.clone(), expected_version: 0 })).await?;
    // Another tenant's activity must not show up in ours.
    let other = unique("events_other");
    let other_token = platform.token(&other, "bob", &["member"]);
    let od = create_desktop(&mut client, &other_token, "Other").await;
    open(&mut client, &other_token, &od.id, "x", None).await;

    let deadline = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let events = window_events(&tenant).await?;
        if events.len() >= 8 || Instant::now() > deadline {
            break events;
        }
    };
    let types: Vec<&str> = events.iter().map(|e| e.envelope.r#type.as_str()).collect();
    assert_eq!(
        types,
        [
            "window.opened",
            "window.moved",
            "window.focused",
            "window.state_changed",
            "desktop.saved",
            "desktop.restored",
            "window.opened",
            "window.closed"
        ]
    );
    for e in &events {
        assert_eq!(e.envelope.entity_id, desktop.id, "entity id = desktop id");
        assert_eq!(e.envelope.tenant_id, tenant);
        assert_eq!(e.envelope.actor, "alice");
        assert!(e.subject.starts_with(&format!("getlood.{tenant}.window.")), "{}", e.subject);
    }
    match &events[3].envelope.payload {
        Some(Payload::WindowStateChanged(s)) => {
            assert_eq!((s.previous_state(), s.state()), (WindowState::Normal, WindowState::Minimized));
            assert!(s.focus_stack.is_empty());
        }
        other => panic!("unexpected payload {other:?}"),
    }
    let other_events = window_events(&other).await?;
    assert_eq!(other_events.len(), 1);
    assert_eq!(other_events[0].envelope.entity_id, od.id);
    platform.stop().await
}

#[tokio::test]
async fn desktop_state_each_tenant_reads_only_its_windows_as_a_mindsdb_table() -> anyhow::Result<()> {
    let (platform, mut client) = start().await?;
    let mindsdb =
        MindsdbClient::new(&MindsdbConfig { url: getlood_testkit::mindsdb_url(), ..MindsdbConfig::default() })?;
    let (acme, globex) = (unique("mdb_acme"), unique("mdb_globex"));
    let acme_token = platform.token(&acme, "alice", &["member"]);
    let globex_token = platform.token(&globex, "bob", &["member"]);
    let da = create_desktop(&mut client, &acme_token, "A").await;
    let dg = create_desktop(&mut client, &globex_token, "G").await;
    let a1 = open(&mut client, &acme_token, &da.id, "acme_dashboard", None).await.window.unwrap();
    let a2 = open(&mut client, &acme_token, &da.id, "acme_chat", None).await.window.unwrap();
    let g1 = open(&mut client, &globex_token, &dg.id, "globex_secret", None).await.window.unwrap();

    let integration = Ident::new("desktop")?;
    let view = Ident::new("windows")?;
    let read = |tenant: String| {
        let mindsdb = mindsdb.clone();
        let (integration, view) = (integration.clone(), view.clone());
        async move {
            let ctx = TenantContext::new(TenantId::parse(&tenant).unwrap(), "agent");
            let sql =
                SqlBuilder::new().kw("SELECT id, app_id, state, focused FROM").qualified(&integration, &view).build();
            mindsdb.query(&ctx, "test.windows", &sql).await.map(|o| o.into_table())
        }
    };
    // Provisioning runs in the background after the first desktop: wait for it.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (acme_rows, globex_rows) = loop {
        match (read(acme.clone()).await, read(globex.clone()).await) {
            (Ok(a), Ok(g)) if a.rows.len() == 2 && g.rows.len() == 1 => break (a, g),
            other => {
                assert!(Instant::now() < deadline, "mindsdb tables not readable: {other:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let mut acme_ids: Vec<String> = acme_rows.rows.iter().filter_map(|r| acme_rows.text(r, "id")).collect();
    acme_ids.sort();
    let mut expected = vec![a1.id.clone(), a2.id.clone()];
    expected.sort();
    assert_eq!(acme_ids, expected, "acme sees exactly its windows");
    assert_eq!(globex_rows.text(&globex_rows.rows[0], "id"), Some(g1.id.clone()), "globex sees only its own");
    let apps: Vec<String> = acme_rows.rows.iter().filter_map(|r| acme_rows.text(r, "app_id")).collect();
    assert!(!apps.iter().any(|a| a.starts_with("globex")));
    // The table is live: a window opened now is visible at once.
    open(&mut client, &acme_token, &da.id, "acme_new", None).await;
    assert_eq!(read(acme.clone()).await?.rows.len(), 3);

    // MindsDB passes three-part names through to Postgres, so acme's agents could name globex's
    // view or the service's base table: the integration's own role must be refused both.
    let acme_ctx = TenantContext::new(TenantId::parse(&acme).unwrap(), "agent");
    let namespaces = Ident::new("pg_namespace")?;
    let catalog = Ident::new("pg_catalog")?;
    let sql = SqlBuilder::new()
        .kw("SELECT nspname FROM")
        .ident(&integration)
        .kw(".")
        .ident(&catalog)
        .kw(".")
        .ident(&namespaces)
        .kw("WHERE nspname LIKE")
        .value(format!("dsk_{globex}_%"))
        .build();
    let found = mindsdb.query(&acme_ctx, "test.namespaces", &sql).await?.into_table();
    let globex_schema = found.rows.first().and_then(|r| found.text(r, "nspname")).expect("globex's schema exists");
    let service_schema = globex_schema.trim_start_matches(&format!("dsk_{globex}_")).to_owned();
    let three_part = |schema: &str, table: &str| -> anyhow::Result<getlood_mindsdb::Sql> {
        Ok(SqlBuilder::new()
            .kw("SELECT * FROM")
            .ident(&integration)
            .kw(".")
            .ident(&Ident::new(schema)?)
            .kw(".")
            .ident(&Ident::new(table)?)
            .build())
    };
    // The same form on acme's own schema works, so the refusals below are about rights.
    let own =
        mindsdb.query(&acme_ctx, "test.own", &three_part(&format!("dsk_{acme}_{service_schema}"), "windows")?).await?;
    assert_eq!(own.into_table().rows.len(), 3);
    for (schema, table) in [(globex_schema.as_str(), "windows"), (service_schema.as_str(), "windows_state")] {
        let stolen = mindsdb.query(&acme_ctx, "test.cross_tenant", &three_part(schema, table)?).await;
        assert!(stolen.is_err(), "acme read {schema}.{table}: {stolen:?}");
    }

    for tenant in [&acme, &globex] {
        let ctx = TenantContext::new(TenantId::parse(tenant).unwrap(), "test");
        let _ = getlood_mindsdb::DatabaseAdapter::new(mindsdb.clone()).detach(&ctx, &integration).await;
    }
    platform.stop().await
}
