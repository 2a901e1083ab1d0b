/* Registers DuckDB's ICU extension, compiled into sandstack by build.rs, as
 * a static extension. DuckDB's CMake build generates this describe function
 * for each extension it links; sandstack builds DuckDB with duckdb-rs's cc
 * backend, which does not, so it is written here (the layout is DuckDB's
 * duckdb_static_extension.h, version 1). */
#include "duckdb_static_extension.h"

/* The extension's C++ entry point; it takes a duckdb::ExtensionLoader&. */
void icu_duckdb_cpp_init(void *loader);

static int32_t sandstack_icu_describe(duckdb_extension_descriptor *descriptor) {
	if (descriptor->version < 1) {
		descriptor->set_error(descriptor, "sandstack's ICU needs descriptor layout 1");
		return 1;
	}
	descriptor->version = 1;
	descriptor->name = "icu";
	descriptor->extension_version = SANDSTACK_DUCKDB_VERSION;
	descriptor->api_version = SANDSTACK_DUCKDB_VERSION;
	descriptor->entry_cpp = (void (*)(void))icu_duckdb_cpp_init;
	return 0;
}

/* Called once before the first database opens; 0 on success. */
int32_t sandstack_register_icu(void) {
	return duckdb_register_static_extension(sandstack_icu_describe);
}
