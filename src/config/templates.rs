//! The template language a mapping may use: minijinja, cut down to what stays bounded
//! (see `bounds`), in one environment shape for the config check and the renderer.
//!
//! The config owns it because the config is where a template is written and refused; the
//! mapping compiles and renders templates with the same `environment`.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

mod bounds;

pub use bounds::check_source;

/// Instructions a single template render may execute. Generous for any real
/// config file (a loop over a few hundred items), small enough that a runaway
/// loop fails in milliseconds instead of stalling every sync: one step does at most
/// work linear in a 64 KiB value (see `bounds`), so this also bounds the time.
pub const TEMPLATE_FUEL: u64 = 20_000;

/// Largest output of one template. Templates build small config strings; anything
/// bigger is almost certainly a mistake, and the cap keeps it from filling memory
/// and the target volume.
pub const MAX_TEMPLATE_OUTPUT_BYTES: usize = 65_536;

/// Validates template syntax at config load. The message may quote the template
/// (it is config), never a secret: no secret is in scope here.
pub fn check_template(source: &str) -> Result<(), String> {
    check_source(source)?;
    let env = environment();
    match env.template_from_str(source) {
        Ok(_) => Ok(()),
        Err(e) => Err(compile_error_message(&e)),
    }
}

/// One environment shape for both `check_template` and `Mapper`, so a template that
/// passes the config check compiles the same way later.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A typo must fail the sync, not silently write an empty password.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Outputs are files, not HTML; minijinja would otherwise escape for a key
    // like `index.html` and corrupt values containing `&` or `<`.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // The template is the file content: YAML already controls the final newline
    // (`|` vs `|-`), so a second, silent strip would only surprise.
    env.set_keep_trailing_newline(true);
    env.set_fuel(Some(TEMPLATE_FUEL));
    bounds::restrict(&mut env);
    env
}

/// Compile errors come from template source alone (no secret is in the context
/// at compile time), so minijinja's detail is safe and useful here.
pub fn compile_error_message(e: &minijinja::Error) -> String {
    let mut message = e.kind().to_string();
    if let Some(detail) = e.detail() {
        message.push_str(": ");
        message.push_str(detail);
    }
    if let Some(line) = e.line() {
        message.push_str(&format!(" (line {line})"));
    }
    message
}
