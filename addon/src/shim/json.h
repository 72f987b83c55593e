// A small JSON reader for config.json (RFC 8259). It builds a tree of nodes in one
// malloc'ed array per container; only what TypeScript writes needs support, but every
// malformed input is an error, never undefined behaviour.
#pragma once
#include <stddef.h>

namespace shim {

enum class JsonType { Null, Bool, Number, String, Array, Object };

struct JsonNode {
  JsonType type = JsonType::Null;
  bool boolean = false;
  double number = 0;
  char* string = nullptr;   // String value (NUL terminated, unescaped)
  char* key = nullptr;      // member name when the parent is an Object
  JsonNode* child = nullptr;  // first element/member
  JsonNode* next = nullptr;   // next sibling
};

// Parses text; returns the root or nullptr with g_status set ("config.json: ... at byte N").
JsonNode* json_parse(const char* text, size_t len, const char* what);
void json_free(JsonNode* node);

const JsonNode* json_get(const JsonNode* obj, const char* key);
// Typed accessors: return the fallback when the member is absent; -1 + g_status when the
// member has the wrong type (so a typo in TS is reported, not ignored).
int json_string(const JsonNode* obj, const char* key, const char** out, const char* where);
int json_bool(const JsonNode* obj, const char* key, bool* out, const char* where);
int json_int(const JsonNode* obj, const char* key, long long* out, const char* where);
// Collects an array of strings into a NULL-terminated malloc'ed vector (strings borrowed).
int json_string_array(const JsonNode* obj, const char* key, const char*** out, size_t* count,
                      const char* where);

}  // namespace shim
