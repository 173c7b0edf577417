#include "tree/image_tree.h"

#include <cerrno>

#include "base/log.h"
#include "base/path.h"

namespace layerfs {
namespace {

mode_t TypeOf(const MergedTree& tree, uint32_t node) {
  if (tree.IsDir(node)) return S_IFDIR;
  struct stat st;
  tree.Stat(node, &st);
  return st.st_mode & S_IFMT;
}

}  // namespace

int ImageTree::Lookup(Ino parent, std::string_view name, struct stat* out) {
  const uint32_t dir = NodeOf(parent);
  if (dir == MergedTree::kNoNode) return ESTALE;
  if (!tree_.IsDir(dir)) return ENOTDIR;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  const uint32_t child = tree_.Lookup(dir, name);
  if (child == MergedTree::kNoNode) return ENOENT;
  tree_.Stat(child, out);
  lookups_.Add(tree_.InodeOf(child));
  return 0;
}

int ImageTree::GetAttr(Ino ino, struct stat* out, bool count) {
  const uint32_t node = NodeOf(ino);
  if (node == MergedTree::kNoNode) return ESTALE;
  tree_.Stat(node, out);
  if (count) lookups_.Add(tree_.InodeOf(node));
  return 0;
}

void ImageTree::Forget(Ino ino, uint64_t count) {
  const uint32_t node = NodeOf(ino);
  if (node == MergedTree::kNoNode) return LogError("forget of unknown inode {}", ino);
  bool underflow = false;
  lookups_.Forget(node, count, &underflow);
  if (underflow) LogError("inode {}: the kernel forgot more lookups than it was given", ino);
}

int ImageTree::Readlink(Ino ino, std::string* target) {
  const uint32_t node = NodeOf(ino);
  if (node == MergedTree::kNoNode) return ESTALE;
  if (static_cast<EntryType>(tree_.EntryOf(node).type) != EntryType::kSymlink) return EINVAL;
  *target = tree_.LinkTarget(node);
  return 0;
}

int ImageTree::ReadFrom(Ino ino, ReadSource* out) {
  const uint32_t node = NodeOf(ino);
  if (node == MergedTree::kNoNode) return ESTALE;
  out->node = node;
  return 0;
}

int ImageTree::ReadDir(Ino ino, uint64_t offset, size_t max, std::vector<DirItem>* out) {
  const uint32_t node = NodeOf(ino);
  if (node == MergedTree::kNoNode) return ESTALE;
  if (!tree_.IsDir(node)) return ENOTDIR;
  const size_t limit = out->size() + max;
  if (offset == 0) out->push_back({".", ino, S_IFDIR, 1});
  if (offset <= 1) out->push_back({"..", Ino{tree_.Parent(node)} + 1, S_IFDIR, kListFirst});
  auto children = tree_.Children(node);
  for (uint64_t i = offset > kListFirst ? offset - kListFirst : 0;
       i < children.size() && out->size() < limit; ++i) {
    const uint32_t c = children[static_cast<size_t>(i)];
    out->push_back({std::string(tree_.Name(c)), Ino{tree_.InodeOf(c)} + 1, TypeOf(tree_, c),
                    kListFirst + i + 1});
  }
  return 0;
}

int ImageTree::GetXattr(Ino ino, std::string_view name, std::string* value) {
  const uint32_t node = NodeOf(ino);
  if (node == MergedTree::kNoNode) return ESTALE;
  return tree_.Xattr(node, name, value) ? 0 : ENODATA;
}

int ImageTree::ListXattr(Ino ino, std::string* names) {
  const uint32_t node = NodeOf(ino);
  if (node == MergedTree::kNoNode) return ESTALE;
  names->clear();
  tree_.XattrNames(node, names);
  return 0;
}

int ImageTree::Statfs(struct statvfs* out) {
  *out = {};
  uint64_t bytes = 0;
  for (const Layer& l : tree_.layers()) bytes += l.index.header().regular_bytes;
  out->f_bsize = 4096;
  out->f_frsize = 4096;
  out->f_blocks = (bytes + 4095) / 4096;
  out->f_files = tree_.visible_count();
  out->f_namemax = kNameMax;
  return 0;
}

}  // namespace layerfs
