use mmh_format::Digest;
use rs_merkle::{Hasher, MerkleTree};
use sha2::{Digest as _, Sha256};

/// Prefix of a leaf hash (RFC 6962 style domain separation).
const LEAF_PREFIX: u8 = 0x00;
/// Prefix of an inner-node hash. Distinct from the leaf prefix so that no chunk digest
/// can pose as an inner node (second-preimage attacks on the tree).
const NODE_PREFIX: u8 = 0x01;

/// The Merkle leaf for one chunk digest: SHA-256(0x00 ‖ digest).
pub fn leaf_hash(chunk_digest: &Digest) -> Digest {
    Sha256::new()
        .chain_update([LEAF_PREFIX])
        .chain_update(chunk_digest)
        .finalize()
        .into()
}

/// An inner node: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    Sha256::new()
        .chain_update([NODE_PREFIX])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

#[derive(Clone)]
struct DomainSeparatedSha256;

impl Hasher for DomainSeparatedSha256 {
    type Hash = Digest;

    fn hash(data: &[u8]) -> Digest {
        Sha256::digest(data).into()
    }

    /// A node without a right sibling is promoted unchanged (rs_merkle's rule), so the
    /// tree of n leaves needs no padding.
    fn concat_and_hash(left: &Digest, right: Option<&Digest>) -> Digest {
        match right {
            Some(right) => node_hash(left, right),
            None => *left,
        }
    }
}

/// The Merkle root over chunk digests in archive order; all zeros for no chunks.
pub fn merkle_root(chunk_digests: &[Digest]) -> Digest {
    let leaves: Vec<Digest> = chunk_digests.iter().map(leaf_hash).collect();
    MerkleTree::<DomainSeparatedSha256>::from_leaves(&leaves)
        .root()
        .unwrap_or([0; 32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_and_node_hashes_are_domain_separated() {
        let x = [7u8; 32];
        assert_ne!(leaf_hash(&x), Sha256::digest(x).as_slice());
        let node_input_as_leaf = leaf_hash(&x);
        assert_ne!(node_hash(&x, &x), node_input_as_leaf);
    }

    #[test]
    fn root_matches_a_hand_built_tree() {
        let d: Vec<Digest> = (0..3u8).map(|i| [i; 32]).collect();
        let (l0, l1, l2) = (leaf_hash(&d[0]), leaf_hash(&d[1]), leaf_hash(&d[2]));
        // Three leaves: the third is promoted to the second level unchanged.
        assert_eq!(merkle_root(&d), node_hash(&node_hash(&l0, &l1), &l2));
        assert_eq!(merkle_root(&d[..1]), l0);
    }

    #[test]
    fn root_changes_with_order_and_content() {
        let a = [[1u8; 32], [2u8; 32]];
        let b = [[2u8; 32], [1u8; 32]];
        assert_ne!(merkle_root(&a), merkle_root(&b));
        assert_ne!(merkle_root(&a), merkle_root(&a[..1]));
    }
}
