#include "ferry/store/database.hpp"

#include <fmt/core.h>
#include <sqlite3.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <functional>
#include <sstream>
#include <thread>

#include "ferry/store/derivation.hpp"
#include "ferry/util/error.hpp"

namespace ferry::store {

namespace {

// Thrown inside a transaction body when SQLite reports busy/locked: the
// transaction is rolled back and run again.
struct busy_error {};

class statement {
public:
    statement(sqlite3* db, const std::string& sql, const std::string& origin) : db_(db), origin_(origin) {
        if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK) check(sqlite3_errcode(db));
    }
    // A statement of the database's cache (store_database::prepared): reset for
    // its next use instead of finalized.
    statement(sqlite3* db, sqlite3_stmt* cached, const std::string& origin)
        : db_(db), stmt_(cached), origin_(origin), cached_(true) {}
    ~statement() {
        if (!cached_) {
            sqlite3_finalize(stmt_);
            return;
        }
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
    }
    statement(const statement&) = delete;

    statement& bind(int i, const std::string& v) {
        check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
        return *this;
    }
    statement& bind(int i, std::int64_t v) {
        check(sqlite3_bind_int64(stmt_, i, v));
        return *this;
    }
    statement& bind_null(int i) {
        check(sqlite3_bind_null(stmt_, i));
        return *this;
    }
    // true: a row is available.
    bool step() {
        int rc = sqlite3_step(stmt_);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        check(rc);
        return false;
    }
    std::string text(int col) const {
        auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
        return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
    }
    std::int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
    bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

    void check(int rc) const {
        if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return;
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED || (rc & 0xff) == SQLITE_BUSY) throw busy_error{};
        throw failure(errc::bad_input, fmt::format("store database {}: {}", origin_, sqlite3_errmsg(db_)));
    }

private:
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
    std::string origin_;
    bool cached_ = false;
};

void exec(sqlite3* db, const char* sql, const std::string& origin) {
    int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) throw busy_error{};
    if (rc != SQLITE_OK)
        throw failure(errc::bad_input, fmt::format("store database {}: {}: {}", origin, sql, sqlite3_errmsg(db)));
}

std::vector<std::string> split_sigs(const std::string& s) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

}  // namespace

store_database::store_database(store_config config, database_options options)
    : config_(std::move(config)), options_(options) {
    int flags = options_.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (sqlite3_open_v2(config_.database_path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
        std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        db_ = nullptr;
        throw failure(errc::bad_input, fmt::format("cannot open store database {}: {}", config_.database_path, msg));
    }
    sqlite3_busy_timeout(db_, static_cast<int>(options_.busy_timeout.count()));
    // As Nix 2.8 and Guix with fsync-metadata (their default): in WAL mode a
    // commit then appends to the WAL without an fsync (checkpoints still sync), so
    // registering path after path does not cost one fdatasync each. A setting of
    // this connection only; the database file is untouched.
    if (!options_.read_only) exec(db_, "pragma synchronous = normal", config_.database_path);
    // Learn the schema: which columns each table has (Guix lacks ultimate/sigs/ca).
    with_retry("reading the schema", [&] {
        columns_.clear();
        for (const char* table : {"ValidPaths", "Refs", "DerivationOutputs"}) {
            statement st(db_, fmt::format("pragma table_info({})", table), config_.database_path);
            while (st.step()) columns_[table].insert(st.text(1));
        }
    });
    if (!has_column("ValidPaths", "path") || !has_column("ValidPaths", "hash") || !has_column("Refs", "referrer"))
        throw failure(errc::unsupported,
                      fmt::format("store database {}: no ValidPaths/Refs tables of the Nix schema", config_.database_path));
}

store_database::~store_database() {
    for (auto& [sql, stmt] : prepared_) sqlite3_finalize(stmt);
    sqlite3_close(db_);
}

sqlite3_stmt* store_database::prepared(const std::string& sql) {
    // Preparing cost about as much as running these one-row lookups; a closure of
    // 3000 paths runs each a few thousand times.
    if (auto it = prepared_.find(sql); it != prepared_.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) throw busy_error{};
    if (rc != SQLITE_OK)
        throw failure(errc::bad_input, fmt::format("store database {}: {}", config_.database_path, sqlite3_errmsg(db_)));
    prepared_.emplace(sql, stmt);
    return stmt;
}

bool store_database::has_column(const std::string& table, const std::string& column) const {
    auto it = columns_.find(table);
    return it != columns_.end() && it->second.count(column);
}

template <typename F>
void store_database::with_retry(const char* what, F&& body) {
    auto deadline = std::chrono::steady_clock::now() + options_.retry_deadline;
    for (int attempt = 0;; ++attempt) {
        try {
            body();
            return;
        } catch (const busy_error&) {
            sqlite3_exec(db_, "rollback;", nullptr, nullptr, nullptr);
            if (std::chrono::steady_clock::now() > deadline)
                throw failure(errc::timed_out,
                              fmt::format("store database {} stayed busy while {}", config_.database_path, what));
            // Back off a little, with jitter, before retrying (as Nix's handleSQLiteBusy).
            std::this_thread::sleep_for(std::chrono::milliseconds(1 + (attempt * 7919) % 100));
        } catch (...) {
            sqlite3_exec(db_, "rollback;", nullptr, nullptr, nullptr);
            throw;
        }
    }
}

std::optional<std::int64_t> store_database::path_id(const std::string& path) {
    statement st(db_, prepared("select id from ValidPaths where path = ?"), config_.database_path);
    st.bind(1, path);
    if (!st.step()) return std::nullopt;
    return st.integer(0);
}

bool store_database::is_valid(const std::string& path) {
    bool valid = false;
    with_retry("checking validity", [&] { valid = path_id(path).has_value(); });
    return valid;
}

std::vector<std::string> store_database::query_references(const std::string& path) {
    std::vector<std::string> refs;
    with_retry("querying references", [&] {
        refs.clear();
        statement st(db_,
                     prepared("select path from Refs join ValidPaths on reference = id where referrer = "
                              "(select id from ValidPaths where path = ?)"),
                     config_.database_path);
        st.bind(1, path);
        while (st.step()) refs.push_back(st.text(0));
    });
    std::sort(refs.begin(), refs.end(), store_path_less{});
    return refs;
}

std::optional<path_info> store_database::query_path_info(const std::string& path) {
    std::optional<path_info> info;
    with_retry("querying path info", [&] {
        info.reset();
        std::string cols = "hash, registrationTime, deriver, narSize";
        for (const char* c : {"ultimate", "sigs", "ca"}) cols += has_column("ValidPaths", c) ? std::string(", ") + c : ", null";
        statement st(db_, prepared("select " + cols + " from ValidPaths where path = ?"), config_.database_path);
        st.bind(1, path);
        if (!st.step()) return;
        path_info i;
        i.path = path;
        i.nar_hash = st.text(0);
        i.registration_time = st.integer(1);
        i.deriver = st.text(2);
        i.nar_size = static_cast<std::uint64_t>(st.integer(3));
        i.ultimate = st.integer(4) != 0;
        i.sigs = split_sigs(st.text(5));
        i.ca = st.text(6);
        info = std::move(i);
    });
    if (info) info->references = query_references(path);
    return info;
}

std::uint64_t store_database::nar_size_total(const std::vector<std::string>& paths) {
    std::uint64_t total = 0;
    for (const auto& p : paths)
        if (auto info = query_path_info(p)) total += info->nar_size;
    return total;
}

std::vector<std::string> store_database::closure(const std::vector<std::string>& paths) {
    std::set<std::string, store_path_less> seen;
    std::vector<std::string> todo;
    for (const auto& p : paths) {
        if (!is_valid(p)) throw failure(errc::bad_input, fmt::format("path '{}' is not valid in {}", p, config_.store_dir));
        if (seen.insert(p).second) todo.push_back(p);
    }
    while (!todo.empty()) {
        auto p = std::move(todo.back());
        todo.pop_back();
        for (auto& r : query_references(p))
            if (seen.insert(r).second) todo.push_back(r);
    }
    return {seen.begin(), seen.end()};
}

std::vector<std::string> nix_topo_sort(const std::vector<std::string>& paths,
                                       const std::map<std::string, std::vector<std::string>>& references) {
    // std::set<StorePath> iterates in base-name order; references are sets too.
    std::set<std::string, store_path_less> items(paths.begin(), paths.end());
    std::set<std::string, store_path_less> visited, parents;
    std::vector<std::string> sorted;
    std::function<void(const std::string&, const std::string*)> visit = [&](const std::string& path,
                                                                             const std::string* parent) {
        if (parents.count(path))
            throw failure(errc::bad_input,
                          fmt::format("cycle detected in the references of '{}' from '{}'", path, parent ? *parent : ""));
        if (!visited.insert(path).second) return;
        parents.insert(path);
        auto it = references.find(path);
        if (it != references.end()) {
            std::set<std::string, store_path_less> refs(it->second.begin(), it->second.end());
            for (const auto& r : refs)
                if (r != path && items.count(r)) visit(r, &path);
        }
        sorted.push_back(path);
        parents.erase(path);
    };
    for (const auto& p : items) visit(p, nullptr);
    std::reverse(sorted.begin(), sorted.end());
    return sorted;
}

std::vector<std::string> store_database::topo_sort(const std::vector<std::string>& paths) {
    std::map<std::string, std::vector<std::string>> refs;
    for (const auto& p : paths) {
        if (!is_valid(p)) throw failure(errc::bad_input, fmt::format("path '{}' is not valid", p));
        refs[p] = query_references(p);
    }
    return nix_topo_sort(paths, refs);
}

std::vector<std::string> store_database::export_order(const std::vector<std::string>& paths) {
    auto sorted = topo_sort(paths);
    std::reverse(sorted.begin(), sorted.end());
    return sorted;
}

void store_database::register_valid_paths(const std::vector<path_info>& infos) {
    if (infos.empty()) return;
    // Read .drv outputs before the transaction: no file I/O while holding locks.
    std::map<std::string, derivation> drvs;
    if (has_column("DerivationOutputs", "drv")) {
        for (const auto& i : infos) {
            if (!i.path.ends_with(".drv")) continue;
            drvs.emplace(i.path, read_derivation(i.path));
        }
    }
    std::map<std::string, std::vector<std::string>> graph;
    std::vector<std::string> batch;
    for (const auto& i : infos) {
        parse_store_path(config_.store_dir, i.path);
        graph[i.path] = i.references;
        batch.push_back(i.path);
    }
    nix_topo_sort(batch, graph);  // rejects cycles before touching the database

    const bool has_ultimate = has_column("ValidPaths", "ultimate"), has_sigs = has_column("ValidPaths", "sigs"),
               has_ca = has_column("ValidPaths", "ca");
    std::string insert_sql = "insert into ValidPaths (path, hash, registrationTime, deriver, narSize";
    std::string values = "?, ?, ?, ?, ?";
    std::string update_sql = "update ValidPaths set narSize = ?, hash = ?";
    for (auto [present, name] : {std::pair{has_ultimate, "ultimate"}, {has_sigs, "sigs"}, {has_ca, "ca"}}) {
        if (!present) continue;
        insert_sql += std::string(", ") + name;
        values += ", ?";
        update_sql += fmt::format(", {} = ?", name);
    }
    insert_sql += ") values (" + values + ")";
    update_sql += " where path = ?";
    auto now = static_cast<std::int64_t>(std::time(nullptr));

    with_retry("registering paths", [&] {
        exec(db_, "begin", config_.database_path);  // deferred, like Nix's SQLiteTxn
        for (const auto& i : infos) {
            auto bind_optional = [&](statement& st, int& col) {
                if (has_ultimate) i.ultimate ? st.bind(col++, std::int64_t(1)) : st.bind_null(col++);
                if (has_sigs) {
                    std::string s;
                    for (const auto& sig : i.sigs) s += (s.empty() ? "" : " ") + sig;
                    s.empty() ? st.bind_null(col++) : st.bind(col++, s);
                }
                if (has_ca) i.ca.empty() ? st.bind_null(col++) : st.bind(col++, i.ca);
            };
            if (path_id(i.path)) {
                statement st(db_, update_sql, config_.database_path);
                int col = 1;
                i.nar_size ? st.bind(col++, std::int64_t(i.nar_size)) : st.bind_null(col++);
                st.bind(col++, i.nar_hash);
                bind_optional(st, col);
                st.bind(col++, i.path);
                st.step();
                continue;
            }
            statement st(db_, insert_sql, config_.database_path);
            int col = 1;
            st.bind(1, i.path).bind(2, i.nar_hash).bind(3, i.registration_time ? i.registration_time : now);
            col = 4;
            i.deriver.empty() ? st.bind_null(col++) : st.bind(col++, i.deriver);
            i.nar_size ? st.bind(col++, std::int64_t(i.nar_size)) : st.bind_null(col++);
            bind_optional(st, col);
            st.step();
            auto id = sqlite3_last_insert_rowid(db_);
            if (auto d = drvs.find(i.path); d != drvs.end()) {
                for (const auto& o : d->second.outputs) {
                    if (o.path.empty()) continue;
                    statement out(db_, "insert or replace into DerivationOutputs (drv, id, path) values (?, ?, ?)",
                                  config_.database_path);
                    out.bind(1, id).bind(2, o.name).bind(3, o.path);
                    out.step();
                }
            }
        }
        for (const auto& i : infos) {
            auto referrer = *path_id(i.path);
            for (const auto& r : i.references) {
                auto ref = path_id(r);
                if (!ref)
                    throw failure(errc::bad_input,
                                  fmt::format("cannot register '{}': its reference '{}' is not valid", i.path, r));
                statement st(db_, "insert or replace into Refs (referrer, reference) values (?, ?)",
                             config_.database_path);
                st.bind(1, referrer).bind(2, *ref);
                st.step();
            }
        }
        exec(db_, "commit", config_.database_path);
    });
}

void create_guix_database(const std::string& file) {
    std::filesystem::create_directories(std::filesystem::path(file).parent_path());
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db,
                          "pragma journal_mode=wal;"
                          "create table ValidPaths (id integer primary key autoincrement not null, path text unique "
                          "not null, hash text not null, registrationTime integer not null, deriver text, narSize "
                          "integer);"
                          "create table Refs (referrer integer not null, reference integer not null, primary key "
                          "(referrer, reference));"
                          "create table DerivationOutputs (drv integer not null, id text not null, path text not "
                          "null, primary key (drv, id));",
                          nullptr, nullptr, nullptr);
    std::string why = rc == SQLITE_OK ? "" : (db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    if (!why.empty()) throw failure(errc::bad_input, fmt::format("creating {}: {}", file, why));
}

}  // namespace ferry::store
