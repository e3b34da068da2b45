//! The OpenAPI 3.1 document of `/api/v1`, written by hand as a table of
//! operations (what each does, the role it needs, its query and body) and
//! assembled into the document here. A test checks that it lists exactly the
//! routes of [`super::api::table`], method for method.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::Web;

/// One operation of the API.
struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    /// Which tokens may call it.
    role: &'static str,
    /// Query parameters: name, description.
    query: &'static [(&'static str, &'static str)],
    /// The JSON body's schema, if it takes one.
    body: Option<fn() -> Value>,
    /// The success status.
    ok: u16,
    /// The success media type.
    media: &'static str,
}

const JSON: &str = "application/json";
const SITE: &str = "site";
const OWNER: &str = "site, or owner of the list";
const MODERATOR: &str = "site, or owner or moderator of the list";

fn object(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required,
           "additionalProperties": false})
}

fn value_body() -> Value {
    object(
        json!({"value": {"description": "the new value: string, number, boolean, or a list of strings (joined with commas)"}}),
        &["value"],
    )
}

fn addresses_body() -> Value {
    object(
        json!({"addresses": {"type": "array", "items": {"type": "string", "format": "email"}}}),
        &["addresses"],
    )
}

fn reason_body() -> Value {
    object(
        json!({"reason": {"type": "string", "description": "why, for a rejection: quoted to the sender"}}),
        &[],
    )
}

fn ops() -> Vec<Op> {
    let op = |method, path, id, summary, role| Op {
        method,
        path,
        id,
        summary,
        role,
        query: &[],
        body: None,
        ok: 200,
        media: JSON,
    };
    vec![
        op("get", "/domains", "domainList", "Every domain", SITE),
        Op {
            body: Some(|| {
                object(
                    json!({"name": {"type": "string"}, "opaque": {"type": "boolean"}}),
                    &["name"],
                )
            }),
            ok: 201,
            ..op("post", "/domains", "domainCreate", "Create a domain", SITE)
        },
        op(
            "delete",
            "/domains/{name}",
            "domainDelete",
            "Delete a domain that has no lists",
            SITE,
        ),
        Op {
            body: Some(value_body),
            ..op(
                "put",
                "/domains/{name}/settings/{key}",
                "domainSet",
                "Change a domain setting (opaque)",
                SITE,
            )
        },
        Op {
            query: &[("domain", "only the lists of this domain")],
            ..op(
                "get",
                "/lists",
                "listList",
                "Lists with their member counts (owners and moderators see theirs)",
                "any token",
            )
        },
        Op {
            body: Some(|| object(json!({"address": {"type": "string"}}), &["address"])),
            ok: 201,
            ..op(
                "post",
                "/lists",
                "listCreate",
                "Create a list (and its domain)",
                SITE,
            )
        },
        op(
            "get",
            "/lists/{list}",
            "listShow",
            "A list with every setting",
            MODERATOR,
        ),
        op(
            "delete",
            "/lists/{list}",
            "listDelete",
            "Delete a list with its members",
            SITE,
        ),
        Op {
            body: Some(value_body),
            ..op(
                "put",
                "/lists/{list}/settings/{key}",
                "listSet",
                "Change one list setting; it applies at once",
                OWNER,
            )
        },
        Op {
            query: &[
                ("cursor", "the `next` of the previous page"),
                ("limit", "members per page, 1 to 1000 (default 100)"),
                (
                    "prefix",
                    "only addresses starting with this; a page may then be short and still have a `next`",
                ),
            ],
            ..op(
                "get",
                "/lists/{list}/members",
                "memberPage",
                "A page of members, with the cursor of the next",
                OWNER,
            )
        },
        Op {
            body: Some(addresses_body),
            ..op(
                "post",
                "/lists/{list}/members",
                "memberAdd",
                "Add members",
                OWNER,
            )
        },
        Op {
            body: Some(addresses_body),
            ..op(
                "post",
                "/lists/{list}/members/remove",
                "memberRemove",
                "Remove members",
                OWNER,
            )
        },
        Op {
            media: "application/x-ndjson",
            ..op(
                "get",
                "/lists/{list}/members/export",
                "memberExport",
                "Every member, one JSON object a line, streamed",
                OWNER,
            )
        },
        Op {
            body: Some(|| json!({"type": "string", "contentMediaType": "application/x-ndjson",
                                 "description": "one member a line: {\"address\": …} or a JSON string"})),
            ..op(
                "post",
                "/lists/{list}/members/import",
                "memberImport",
                "Add members from NDJSON, streamed",
                OWNER,
            )
        },
        op(
            "delete",
            "/lists/{list}/members/{address}",
            "memberDelete",
            "Remove one member",
            OWNER,
        ),
        Op {
            body: Some(value_body),
            ..op(
                "put",
                "/lists/{list}/members/{address}/settings/{key}",
                "memberSet",
                "Set a member's flag (moderated, delivery_enabled)",
                OWNER,
            )
        },
        op(
            "get",
            "/lists/{list}/held",
            "heldList",
            "Held posts",
            MODERATOR,
        ),
        op(
            "get",
            "/lists/{list}/held/{message_id}",
            "heldShow",
            "One held post with its message (as text: never render it as HTML)",
            MODERATOR,
        ),
        Op {
            body: Some(reason_body),
            ..op(
                "post",
                "/lists/{list}/held/{message_id}/{action}",
                "heldAct",
                "Approve, reject or discard a held post (action: approve, reject, discard; \
                 optional body {\"reason\": …} quoted to the sender of a rejected post)",
                MODERATOR,
            )
        },
        Op {
            query: &[("member", "only this member's record")],
            ..op(
                "get",
                "/lists/{list}/bounces",
                "bounceShow",
                "Bounce records",
                OWNER,
            )
        },
        op(
            "post",
            "/lists/{list}/bounces/{member}/reset",
            "bounceReset",
            "Forget a member's bounce record and re-enable delivery",
            OWNER,
        ),
        op(
            "get",
            "/lists/{list}/bans",
            "banList",
            "The list's ban list: exact addresses and ^ patterns",
            OWNER,
        ),
        Op {
            body: Some(|| object(json!({"pattern": {"type": "string"}}), &["pattern"])),
            ok: 201,
            ..op(
                "post",
                "/lists/{list}/bans",
                "banAdd",
                "Ban an address or a ^ pattern (201 when new, 200 when there already)",
                OWNER,
            )
        },
        op(
            "delete",
            "/lists/{list}/bans/{pattern}",
            "banRemove",
            "Lift a ban (the pattern URL-encoded)",
            OWNER,
        ),
        op(
            "get",
            "/lists/{list}/digest",
            "digestStatus",
            "The pending digest issue: posts waiting, next volume and number",
            OWNER,
        ),
        op(
            "post",
            "/lists/{list}/digest/send",
            "digestSend",
            "Cut and send the pending digest issue now",
            OWNER,
        ),
        op(
            "get",
            "/queue",
            "queue",
            "Messages waiting, jobs and chunks",
            SITE,
        ),
        Op {
            media: "message/rfc822",
            ..op(
                "get",
                "/queue/{id}/body",
                "messageBody",
                "One stored message as received",
                SITE,
            )
        },
        op(
            "get",
            "/tokens",
            "tokenList",
            "Tokens (never the tokens themselves)",
            SITE,
        ),
        Op {
            body: Some(|| {
                object(
                    json!({"role": {"enum": ["site", "owner", "moderator"]},
                           "lists": {"type": "array", "items": {"type": "string"}},
                           "expires_at": {"type": ["integer", "null"],
                                          "description": "seconds since the epoch"},
                           "description": {"type": "string"}}),
                    &["role"],
                )
            }),
            ok: 201,
            ..op(
                "post",
                "/tokens",
                "tokenCreate",
                "Make a token; the answer shows it once",
                SITE,
            )
        },
        op(
            "delete",
            "/tokens/{id}",
            "tokenRevoke",
            "Revoke a token",
            SITE,
        ),
        Op {
            query: &[
                (
                    "list",
                    "only entries about this list (owners must give one of theirs)",
                ),
                ("since", "only entries at or after this time (seconds since the epoch)"),
                ("cursor", "the `next` of the previous page"),
                ("limit", "entries per page, 1 to 1000 (default 100)"),
            ],
            ..op(
                "get",
                "/audit",
                "audit",
                "The audit log, oldest first",
                "site; an owner for one of its lists",
            )
        },
    ]
}

/// The parameters a path names (`{list}` …).
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

fn operation(op: &Op) -> Value {
    let mut params: Vec<Value> = path_params(op.path)
        .into_iter()
        .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    params.extend(op.query.iter().map(|(name, description)| {
        json!({"name": name, "in": "query", "required": false,
               "description": description, "schema": {"type": "string"}})
    }));
    let problem = json!({"description": "refused: see the problem's detail",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
    let mut v = json!({
        "operationId": op.id,
        "summary": op.summary,
        "description": format!("Role: {}.", op.role),
        "parameters": params,
        "responses": {
            op.ok.to_string(): {"description": "done", "content": {op.media: {}}},
            "4XX": problem.clone(),
            "5XX": problem,
        },
    });
    if let Some(schema) = op.body {
        let media = if op.id == "memberImport" {
            "application/x-ndjson"
        } else {
            JSON
        };
        // A held-post action's body (the reason) may be left out.
        let required = op.id != "heldAct";
        v["requestBody"] = json!({"required": required, "content": {media: {"schema": schema()}}});
    }
    v
}

/// The document, with the server at `base_path` (`/` or a reverse proxy's
/// prefix such as `/lists/`).
pub fn document(base_path: &str) -> Value {
    let mut paths = Map::new();
    for op in ops() {
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        entry[op.method] = operation(&op);
    }
    let server = format!("{}/api/v1", base_path.trim_end_matches('/'));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "listrelay administration API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The same requests as the listrelay CLI and admin socket. \
                Authenticate with `Authorization: Bearer TOKEN` (`listrelay token create`). \
                Errors are RFC 9457 problem details.",
            "license": {"name": "GPL-3.0-or-later", "identifier": "GPL-3.0-or-later"},
        },
        "servers": [{"url": server}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Problem": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {"type": "string"},
                },
                "required": ["type", "title", "status", "detail"],
            }},
        },
    })
}

/// `GET /api/v1/openapi.json` (no token needed).
pub async fn serve(State(web): State<Arc<Web>>) -> Response {
    super::api::json(StatusCode::OK, &document(&web.base_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routes() {
        let doc = document("/");
        let paths = doc["paths"].as_object().unwrap();
        let mut routed = 0;
        for (path, methods, _) in super::super::api::table() {
            for m in methods {
                let m = m.as_str().to_ascii_lowercase();
                assert!(
                    paths.get(path).and_then(|p| p.get(&m)).is_some(),
                    "{m} {path} is routed but not in the OpenAPI document"
                );
                routed += 1;
            }
        }
        let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(
            documented, routed,
            "the document lists routes that do not exist"
        );
        assert_eq!(doc["servers"][0]["url"], "/api/v1");
        assert_eq!(document("/lists/")["servers"][0]["url"], "/lists/api/v1");
    }
}
