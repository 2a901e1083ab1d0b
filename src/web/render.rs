//! A dashboard page from its template and the values every page has; the
//! error page.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::context;

fn now_text() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

pub(super) fn page(
    token_required: bool,
    name: &str,
    page: &str,
    ctx: minijinja::Value,
) -> Response {
    let base = context! {
        page => page,
        version => env!("CARGO_PKG_VERSION"),
        now => now_text(),
        token_required => token_required,
    };
    let merged = context! { ..ctx, ..base };
    match super::templates()
        .get_template(name)
        .and_then(|t| t.render(merged))
    {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(template = %name, error = %format_args!("{e:#}"), "dashboard: a page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; see the log",
            )
                .into_response()
        }
    }
}

/// The error page, with `status`: what `PageError` answers.
pub(super) fn error_page(status: StatusCode, message: String) -> Response {
    let mut r = page(
        false,
        "error.html",
        "",
        context! { status => status.as_u16(), message => message },
    );
    *r.status_mut() = status;
    r
}
